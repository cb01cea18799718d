use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::parse::{parse, Parsed};
use crate::{GgmlType, GgufError, Result, Value};

/// One tensor's header entry. Sizes were validated against the file at open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub ggml_type: GgmlType,
    /// ne0 first (innermost, contiguous), as stored in the file.
    pub dims: Vec<u64>,
    /// Relative to the start of the data section.
    pub offset: u64,
    pub n_elements: u64,
    pub n_bytes: u64,
}

enum Backing {
    Mmap(Mmap),
    Bytes(Vec<u8>),
}

impl Backing {
    fn bytes(&self) -> &[u8] {
        match self {
            Backing::Mmap(m) => m,
            Backing::Bytes(b) => b,
        }
    }
}

/// A parsed GGUF file. Owns the mapping, so tensor slices borrow from it.
pub struct GgufFile {
    backing: Backing,
    path: Option<PathBuf>,
    pub(crate) parsed: Parsed,
}

impl GgufFile {
    /// Memory-maps and validates `path`. Parse errors are wrapped in
    /// [`GgufError::InFile`] so the message names the file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let io_err = |source| GgufError::Io {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(io_err)?;
        let len = file.metadata().map_err(io_err)?.len();
        let backing = if len == 0 {
            // mmap of length 0 is an error on Linux; an empty file is simply truncated.
            Backing::Bytes(Vec::new())
        } else {
            // SAFETY: the map is read-only; if another process truncates or rewrites
            // the file while mapped we may read garbage or fault, the usual mmap
            // caveat accepted by every GGUF loader in exchange for zero-copy weights.
            Backing::Mmap(unsafe { Mmap::map(&file) }.map_err(io_err)?)
        };
        let parsed = parse(backing.bytes()).map_err(|e| GgufError::InFile {
            path: path.to_owned(),
            source: Box::new(e),
        })?;
        Ok(GgufFile {
            backing,
            path: Some(path.to_owned()),
            parsed,
        })
    }

    /// Parses an in-memory file with the same validation as [`GgufFile::open`].
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        let parsed = parse(&bytes)?;
        Ok(GgufFile {
            backing: Backing::Bytes(bytes),
            path: None,
            parsed,
        })
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    pub fn version(&self) -> u32 {
        self.parsed.version
    }

    pub fn alignment(&self) -> u64 {
        self.parsed.alignment
    }

    /// Absolute file offset of the data section.
    pub fn data_offset(&self) -> u64 {
        self.parsed.data_offset
    }

    pub fn file_size(&self) -> u64 {
        self.bytes().len() as u64
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        self.backing.bytes()
    }

    /// Metadata in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.parsed.metadata
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.parsed
            .kv_index
            .get(key)
            .map(|&i| &self.parsed.metadata[i].1)
    }

    /// Tensor infos in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.parsed.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.parsed
            .tensor_index
            .get(name)
            .map(|&i| &self.parsed.tensors[i])
    }

    pub fn require_tensor(&self, name: &str) -> Result<&TensorInfo> {
        self.tensor(name).ok_or_else(|| GgufError::MissingTensor {
            name: name.to_owned(),
        })
    }

    /// Absolute file offset of a tensor's first byte.
    pub fn absolute_offset(&self, t: &TensorInfo) -> u64 {
        self.parsed.data_offset.saturating_add(t.offset)
    }

    /// The tensor's raw bytes (`t.n_bytes` long).
    ///
    /// # Panics
    /// If `t` does not describe a range of this file, i.e. it came from another
    /// file or was hand-built; infos from [`GgufFile::tensors`] were bounds-checked.
    pub fn tensor_data(&self, t: &TensorInfo) -> &[u8] {
        let start = self.absolute_offset(t);
        let end = start.saturating_add(t.n_bytes);
        usize::try_from(start)
            .ok()
            .zip(usize::try_from(end).ok())
            .and_then(|(s, e)| self.bytes().get(s..e))
            .unwrap_or_else(|| {
                panic!(
                    "tensor '{}' ({start}..{end}) is not inside this {}-byte GGUF file",
                    t.name,
                    self.file_size()
                )
            })
    }

    /// Raw bytes of the named tensor.
    pub fn tensor_bytes(&self, name: &str) -> Result<&[u8]> {
        Ok(self.tensor_data(self.require_tensor(name)?))
    }
}

impl fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version())
            .field("file_size", &self.file_size())
            .field("metadata", &self.metadata().len())
            .field("tensors", &self.tensors().len())
            .finish()
    }
}

impl TensorInfo {
    /// `"4096 × 32000"`, ne0 first.
    pub fn shape_string(&self) -> String {
        if self.dims.is_empty() {
            return "scalar".into();
        }
        let parts: Vec<String> = self.dims.iter().map(u64::to_string).collect();
        parts.join(" × ")
    }
}
