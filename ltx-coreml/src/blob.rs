//! MIL weight blob file (`weights/weight.bin`, storage format version 2).
//!
//! Layout (little-endian, every record 64-byte aligned): a 64-byte header `{u32 count,
//! u32 version = 2, reserved}`; then per tensor a 64-byte metadata record `{u32 sentinel =
//! 0xDEADBEEF, u32 dtype, u64 size_in_bytes, u64 data_offset, u64 padding_bits, reserved}`
//! followed by the raw data, zero-padded to the next 64-byte boundary. A program refers to a
//! tensor by the file offset of its *metadata* record.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{CoreMlError, Result};

const ALIGN: u64 = 64;
const VERSION: u32 = 2;
pub const SENTINEL: u32 = 0xDEAD_BEEF;

/// Element types the exporter stores (`BlobDataType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlobDType {
    F16,
    F32,
}

impl BlobDType {
    fn code(self) -> u32 {
        match self {
            Self::F16 => 1,
            Self::F32 => 2,
        }
    }

    fn from_code(code: u32) -> Option<Self> {
        match code {
            1 => Some(Self::F16),
            2 => Some(Self::F32),
            _ => None,
        }
    }

    pub fn size(self) -> usize {
        match self {
            Self::F16 => 2,
            Self::F32 => 4,
        }
    }
}

/// Anything the blob can stream into (a file, or memory in tests).
pub trait WriteSeek: Write + Seek {}
impl<T: Write + Seek> WriteSeek for T {}

/// Streams tensors into a blob file; the header's count is patched in by [`BlobWriter::finish`].
pub struct BlobWriter {
    out: Box<dyn WriteSeek>,
    pos: u64,
    count: u32,
    path: PathBuf,
}

impl BlobWriter {
    pub fn new(mut out: Box<dyn WriteSeek>, path: PathBuf) -> Result<Self> {
        out.write_all(&[0u8; ALIGN as usize])
            .map_err(crate::error::io_err(&path))?;
        Ok(Self {
            out,
            pos: ALIGN,
            count: 0,
            path,
        })
    }

    /// Appends one tensor's raw little-endian bytes; returns the offset of its metadata record.
    pub fn append(&mut self, dtype: BlobDType, data: &[u8]) -> Result<u64> {
        let meta_offset = self.pos;
        let data_offset = meta_offset + ALIGN;
        let mut meta = [0u8; ALIGN as usize];
        meta[0..4].copy_from_slice(&SENTINEL.to_le_bytes());
        meta[4..8].copy_from_slice(&dtype.code().to_le_bytes());
        meta[8..16].copy_from_slice(&(data.len() as u64).to_le_bytes());
        meta[16..24].copy_from_slice(&data_offset.to_le_bytes());
        let padded = (data.len() as u64).div_ceil(ALIGN) * ALIGN;
        let pad = vec![0u8; (padded - data.len() as u64) as usize];
        let err = crate::error::io_err(&self.path);
        (|| {
            self.out.write_all(&meta)?;
            self.out.write_all(data)?;
            self.out.write_all(&pad)
        })()
        .map_err(err)?;
        self.pos = data_offset + padded;
        self.count += 1;
        Ok(meta_offset)
    }

    /// Writes the header and flushes; returns the total size in bytes.
    pub fn finish(mut self) -> Result<u64> {
        let mut header = [0u8; ALIGN as usize];
        header[0..4].copy_from_slice(&self.count.to_le_bytes());
        header[4..8].copy_from_slice(&VERSION.to_le_bytes());
        let err = crate::error::io_err(&self.path);
        (|| {
            self.out.seek(SeekFrom::Start(0))?;
            self.out.write_all(&header)?;
            self.out.seek(SeekFrom::Start(self.pos))?;
            self.out.flush()
        })()
        .map_err(err)?;
        Ok(self.pos)
    }
}

/// A blob file read fully into memory, with every access bounds- and sentinel-checked.
pub struct BlobReader {
    data: Vec<u8>,
    path: PathBuf,
}

impl BlobReader {
    pub fn open(path: &Path) -> Result<Self> {
        let data = std::fs::read(path).map_err(crate::error::io_err(path))?;
        Self::from_bytes(data, path.to_path_buf())
    }

    pub fn from_bytes(data: Vec<u8>, path: PathBuf) -> Result<Self> {
        let r = Self { data, path };
        if r.data.len() < ALIGN as usize {
            return Err(r.corrupt("file is shorter than its 64-byte header"));
        }
        let version = r.u32_at(4)?;
        if version != VERSION {
            return Err(r.corrupt(format!("storage version {version}, expected {VERSION}")));
        }
        Ok(r)
    }

    fn corrupt(&self, reason: impl Into<String>) -> CoreMlError {
        CoreMlError::CorruptBlob {
            path: self.path.clone(),
            reason: reason.into(),
        }
    }

    fn u32_at(&self, at: usize) -> Result<u32> {
        let b = self
            .data
            .get(at..at + 4)
            .ok_or_else(|| self.corrupt(format!("offset {at} is past the end of the file")))?;
        Ok(u32::from_le_bytes(b.try_into().unwrap_or_default()))
    }

    fn u64_at(&self, at: usize) -> Result<u64> {
        let b = self
            .data
            .get(at..at + 8)
            .ok_or_else(|| self.corrupt(format!("offset {at} is past the end of the file")))?;
        Ok(u64::from_le_bytes(b.try_into().unwrap_or_default()))
    }

    /// The tensor whose metadata record is at `offset`: its dtype and raw bytes.
    pub fn get(&self, offset: u64) -> Result<(BlobDType, &[u8])> {
        let len = self.data.len() as u64;
        if offset % ALIGN != 0 || offset < ALIGN || offset + ALIGN > len {
            return Err(self.corrupt(format!(
                "metadata offset {offset} is out of range (file is {len} bytes)"
            )));
        }
        let at = offset as usize;
        let sentinel = self.u32_at(at)?;
        if sentinel != SENTINEL {
            return Err(self.corrupt(format!(
                "invalid sentinel {sentinel:#010x} at offset {offset}"
            )));
        }
        let code = self.u32_at(at + 4)?;
        let dtype = BlobDType::from_code(code)
            .ok_or_else(|| self.corrupt(format!("unsupported blob dtype {code}")))?;
        let size = self.u64_at(at + 8)?;
        let data_offset = self.u64_at(at + 16)?;
        let end = data_offset.saturating_add(size);
        if data_offset < offset + ALIGN || end > len {
            return Err(self.corrupt(format!(
                "data range {data_offset}..{end} is out of range (file is {len} bytes)"
            )));
        }
        Ok((dtype, &self.data[data_offset as usize..end as usize]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[derive(Clone, Default)]
    struct Shared(std::rc::Rc<std::cell::RefCell<Cursor<Vec<u8>>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.borrow_mut().write(b)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl Seek for Shared {
        fn seek(&mut self, p: SeekFrom) -> std::io::Result<u64> {
            self.0.borrow_mut().seek(p)
        }
    }

    #[test]
    fn roundtrip_alignment_and_corruption() {
        let buf = Shared::default();
        let mut w = BlobWriter::new(Box::new(buf.clone()), "mem".into()).unwrap();
        let a = w.append(BlobDType::F16, &[1, 2, 3, 4, 5, 6]).unwrap();
        let b = w.append(BlobDType::F32, &[9u8; 72]).unwrap();
        assert_eq!((a, b), (64, 192));
        let total = w.finish().unwrap();
        let bytes = buf.0.borrow().get_ref().clone();
        assert_eq!(bytes.len() as u64, total);
        assert_eq!(total % 64, 0);
        assert_eq!(&bytes[0..8], &[2, 0, 0, 0, 2, 0, 0, 0]);
        let r = BlobReader::from_bytes(bytes.clone(), "mem".into()).unwrap();
        assert_eq!(
            r.get(a).unwrap(),
            (BlobDType::F16, &[1u8, 2, 3, 4, 5, 6][..])
        );
        assert_eq!(r.get(b).unwrap().1.len(), 72);
        assert!(matches!(r.get(4096), Err(CoreMlError::CorruptBlob { .. })));
        let mut bad = bytes;
        bad[64] = 0;
        let r = BlobReader::from_bytes(bad, "mem".into()).unwrap();
        let err = r.get(64).unwrap_err();
        assert!(err.to_string().contains("sentinel"), "{err}");
    }
}
