//! Safetensors checkpoints (one file or sharded), read into f32 whatever their stored type.

use crate::error::{EngineError, Result};
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The tensors of a checkpoint, held as raw bytes and converted to f32 on request.
pub struct Weights {
    files: Vec<(PathBuf, Vec<u8>)>,
    /// tensor name -> index into `files`.
    index: HashMap<String, usize>,
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    })
}

impl Weights {
    /// Opens `model.safetensors`, or the shards named by `model.safetensors.index.json`.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let single = dir.join("model.safetensors");
        let sharded = dir.join("model.safetensors.index.json");
        if single.is_file() {
            Self::from_files(&[single])
        } else if sharded.is_file() {
            let text = String::from_utf8_lossy(&read(&sharded)?).into_owned();
            let json: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| EngineError::Config {
                    path: sharded.clone(),
                    message: e.to_string(),
                })?;
            let map = json
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| EngineError::Config {
                    path: sharded.clone(),
                    message: "no \"weight_map\" object".into(),
                })?;
            let mut shards: Vec<PathBuf> = Vec::new();
            for (name, file) in map {
                let file = file.as_str().ok_or_else(|| EngineError::Config {
                    path: sharded.clone(),
                    message: format!("weight_map entry {name:?} is not a file name"),
                })?;
                let p = dir.join(file);
                if !shards.contains(&p) {
                    shards.push(p);
                }
            }
            shards.sort();
            Self::from_files(&shards)
        } else if dir.join("pytorch_model.bin").is_file() {
            Err(EngineError::MissingFile {
                dir: dir.to_path_buf(),
                file: "model.safetensors (only pytorch_model.bin is present; convert it to safetensors)".into(),
            })
        } else {
            Err(EngineError::MissingFile {
                dir: dir.to_path_buf(),
                file: "model.safetensors".into(),
            })
        }
    }

    /// Opens the given safetensors files and indexes their tensors.
    pub fn from_files(paths: &[PathBuf]) -> Result<Self> {
        let mut files = Vec::with_capacity(paths.len());
        let mut index = HashMap::new();
        for (i, path) in paths.iter().enumerate() {
            let bytes = read(path)?;
            let st = SafeTensors::deserialize(&bytes).map_err(|e| EngineError::Safetensors {
                path: path.clone(),
                message: format!("{e:?} (is the file truncated or corrupt?)"),
            })?;
            for name in st.names() {
                index.insert(name.to_string(), i);
            }
            drop(st);
            files.push((path.clone(), bytes));
        }
        Ok(Weights { files, index })
    }

    /// Whether a tensor of this name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// Names of all tensors.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }

    fn file_list(&self) -> String {
        self.files
            .iter()
            .map(|(p, _)| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Reads tensor `name`, checks its shape, and converts it to f32 (row-major).
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let &i = self
            .index
            .get(name)
            .ok_or_else(|| EngineError::MissingTensor {
                name: name.to_string(),
                shape: shape.to_vec(),
                files: self.file_list(),
            })?;
        let (path, bytes) = &self.files[i];
        let st = SafeTensors::deserialize(bytes).map_err(|e| EngineError::Safetensors {
            path: path.clone(),
            message: format!("{e:?}"),
        })?;
        let view = st.tensor(name).map_err(|e| EngineError::Safetensors {
            path: path.clone(),
            message: format!("{name}: {e:?}"),
        })?;
        if view.shape() != shape {
            return Err(EngineError::BadTensor {
                name: name.to_string(),
                message: format!("expected shape {:?}, found {:?}", shape, view.shape()),
            });
        }
        let data = view.data();
        let out: Vec<f32> = match view.dtype() {
            Dtype::F32 => crate::vectors::f32s_from_le(data),
            Dtype::F16 => data
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::BF16 => data
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            other => {
                return Err(EngineError::BadTensor {
                    name: name.to_string(),
                    message: format!("dtype {other:?} is not supported (F32, F16 or BF16)"),
                })
            }
        };
        Ok(out)
    }

    /// Like [`Weights::get`] but tries each prefix in turn (`bert.`, `roberta.`, none), since
    /// checkpoints differ in whether the base model's tensors carry its name.
    pub fn get_prefixed(&self, prefixes: &[&str], name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        for p in prefixes {
            let full = format!("{p}{name}");
            if self.contains(&full) {
                return self.get(&full, shape);
            }
        }
        self.get(
            &format!("{}{name}", prefixes.first().copied().unwrap_or("")),
            shape,
        )
    }
}
