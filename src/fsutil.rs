//! Small file helpers shared by the modules that own files: atomic creation
//! (first writer wins) and atomic replacement. A reader never sees half a
//! file.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    path.with_file_name(format!(".{name}.{:016x}.tmp", crate::random::u64()))
}

fn write_temp(path: &Path, data: &[u8]) -> io::Result<PathBuf> {
    let tmp = temp_path(path);
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(data)?;
        f.flush()
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(tmp)
}

/// Reads a small text file (at most 256 bytes are looked at) with as few
/// system calls as possible: open, one read, close.
pub(crate) fn read_small(path: &Path) -> io::Result<String> {
    use std::io::Read;
    let mut buf = [0u8; 256];
    let n = fs::File::open(path)?.read(&mut buf)?;
    String::from_utf8(buf[..n].to_vec()).map_err(|_| io::ErrorKind::InvalidData.into())
}

/// Reads from `file` at `offset` until `buf` is full or the file ends;
/// returns the number of bytes read. Does not move the file position.
pub(crate) fn read_at_most(file: &fs::File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match crate::sys::file::read_at(file, &mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Creates `path` with `data`, all at once, only if it does not exist
/// (`AlreadyExists` otherwise). Built on a hard link, so two processes racing
/// cannot both win and nobody sees a partial file.
pub(crate) fn create_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = write_temp(path, data)?;
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
        Err(_) => {
            // The file system has no hard links: fall back to create_new,
            // which can expose a short file for a moment.
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)?;
            f.write_all(data)
        }
    }
}

/// Replaces `path` with `data` atomically (write a temporary, rename).
pub(crate) fn replace_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = write_temp(path, data)?;
    fs::rename(&tmp, path).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_writer_wins() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        create_atomic(&p, b"one").unwrap();
        let e = create_atomic(&p, b"two").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&p).unwrap(), b"one");
        replace_atomic(&p, b"three").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"three");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporaries left"
        );
    }
}
