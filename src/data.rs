//! MNIST loading: the 5,000-digit CSV subset shipped in `data/` and the full
//! IDX files (`train-images-idx3-ubyte`, optionally gzipped).

use std::io::Read;
use std::path::Path;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::error::ConvError;
use crate::nn::Tensor;

/// Images of one channel with integer class labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Pixels scaled to `[0, 1]`, image after image, `rows * cols` each.
    pub images: Vec<f32>,
    /// Class of each image.
    pub labels: Vec<usize>,
    /// Image height.
    pub rows: usize,
    /// Image width.
    pub cols: usize,
}

fn data_err(reason: String) -> ConvError {
    ConvError::Data { reason }
}

fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, ConvError> {
    let raw = std::fs::read(path).map_err(|e| data_err(format!("reading {}: {e}", path.display())))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| data_err(format!("decompressing {}: {e}", path.display())))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

impl Dataset {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True without images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Loads a CSV (optionally gzipped) of 784 pixel values 0-255 then the
    /// label per line, as `data/mnist_5k.csv.gz`.
    pub fn mnist_csv(path: impl AsRef<Path>) -> Result<Self, ConvError> {
        let path = path.as_ref();
        let text =
            String::from_utf8(read_maybe_gz(path)?).map_err(|_| data_err(format!("{} is not text", path.display())))?;
        let mut images = Vec::new();
        let mut labels = Vec::new();
        for (ln, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let vals: Vec<&str> = line.trim().split(',').collect();
            if vals.len() != 785 {
                return Err(data_err(format!(
                    "{} line {}: {} fields, expected 785",
                    path.display(),
                    ln + 1,
                    vals.len()
                )));
            }
            for v in &vals[..784] {
                let p: f32 = v
                    .trim()
                    .parse()
                    .map_err(|_| data_err(format!("{} line {}: bad pixel {v:?}", path.display(), ln + 1)))?;
                images.push(p / 255.0);
            }
            let l: usize = vals[784]
                .trim()
                .parse()
                .map_err(|_| data_err(format!("{} line {}: bad label", path.display(), ln + 1)))?;
            if l > 9 {
                return Err(data_err(format!(
                    "{} line {}: label {l} is not a digit",
                    path.display(),
                    ln + 1
                )));
            }
            labels.push(l);
        }
        Ok(Dataset {
            images,
            labels,
            rows: 28,
            cols: 28,
        })
    }

    /// Loads one IDX image file and its label file (each optionally gzipped).
    pub fn mnist_idx(images: impl AsRef<Path>, labels: impl AsRef<Path>) -> Result<Self, ConvError> {
        let (ip, lp) = (images.as_ref(), labels.as_ref());
        let im = read_maybe_gz(ip)?;
        let lb = read_maybe_gz(lp)?;
        let be = |b: &[u8], i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]) as usize;
        if im.len() < 16 || be(&im, 0) != 2051 {
            return Err(data_err(format!("{} is not an IDX image file", ip.display())));
        }
        if lb.len() < 8 || be(&lb, 0) != 2049 {
            return Err(data_err(format!("{} is not an IDX label file", lp.display())));
        }
        let (n, rows, cols) = (be(&im, 4), be(&im, 8), be(&im, 12));
        let pixels = n.checked_mul(rows).and_then(|v| v.checked_mul(cols));
        if pixels.map(|p| p.checked_add(16)) != Some(Some(im.len())) || lb.len() != 8 + n || be(&lb, 4) != n {
            return Err(data_err(format!(
                "{} and {} do not match in size",
                ip.display(),
                lp.display()
            )));
        }
        Ok(Dataset {
            images: im[16..].iter().map(|&p| p as f32 / 255.0).collect(),
            labels: lb[8..].iter().map(|&l| l as usize).collect(),
            rows,
            cols,
        })
    }

    /// Loads `train-*` and `t10k-*` IDX files from a directory (names with or
    /// without `.gz`): `(train, test)`.
    pub fn mnist_idx_dir(dir: impl AsRef<Path>) -> Result<(Self, Self), ConvError> {
        let dir = dir.as_ref();
        let find = |stem: &str| {
            let plain = dir.join(stem);
            if plain.exists() {
                plain
            } else {
                dir.join(format!("{stem}.gz"))
            }
        };
        Ok((
            Self::mnist_idx(find("train-images-idx3-ubyte"), find("train-labels-idx1-ubyte"))?,
            Self::mnist_idx(find("t10k-images-idx3-ubyte"), find("t10k-labels-idx1-ubyte"))?,
        ))
    }

    /// Shuffles the images with a seeded permutation.
    pub fn shuffled(&self, seed: u64) -> Self {
        let mut idx: Vec<usize> = (0..self.len()).collect();
        idx.shuffle(&mut StdRng::seed_from_u64(seed));
        self.subset(&idx)
    }

    /// The images at `idx`, in that order.
    pub fn subset(&self, idx: &[usize]) -> Self {
        let px = self.rows * self.cols;
        let mut images = Vec::with_capacity(idx.len() * px);
        for &i in idx {
            images.extend_from_slice(&self.images[i * px..(i + 1) * px]);
        }
        Dataset {
            images,
            labels: idx.iter().map(|&i| self.labels[i]).collect(),
            rows: self.rows,
            cols: self.cols,
        }
    }

    /// The first `n` images and the rest.
    pub fn split(&self, n: usize) -> (Self, Self) {
        let n = n.min(self.len());
        let all: Vec<usize> = (0..self.len()).collect();
        (self.subset(&all[..n]), self.subset(&all[n..]))
    }

    /// Copies the images at `idx` into `x` (`[idx.len(), 1, rows, cols]`) and
    /// their labels into `y`, reusing both buffers.
    pub fn batch(&self, idx: &[usize], x: &mut Tensor<f32>, y: &mut Vec<usize>) {
        let px = self.rows * self.cols;
        x.resize(&[idx.len(), 1, self.rows, self.cols]);
        y.clear();
        for (k, &i) in idx.iter().enumerate() {
            x.data_mut()[k * px..(k + 1) * px].copy_from_slice(&self.images[i * px..(i + 1) * px]);
            y.push(self.labels[i]);
        }
    }
}
