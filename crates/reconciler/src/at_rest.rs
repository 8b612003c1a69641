//! At-rest encryption of snapshot files (`AtRestEncryptionEnabled`): AES-256-GCM with one
//! key per state dir, in a framed format read and written in chunks, so a multi-GB RDB file
//! never has to fit in memory.
//!
//! # The key
//! `<state dir>/keys/at-rest.key`: 32 random bytes, mode 0600 in a 0700 directory, made the
//! first time something is encrypted and never replaced (files written with it would become
//! unreadable). `KmsKeyId` is only recorded: every group's files use this one key, as
//! AWS's service-managed key would. The key is never logged.
//!
//! # The file format (version 1)
//! ```text
//! header  MAGIC (16 bytes: "ECLOCAL-ATREST" 0x00 0x01)  file id (16 random bytes)
//! chunk*  nonce (12 random bytes)  last (1 byte: 1 on the final chunk, else 0)
//!         length (u32 little-endian)  ciphertext+tag (length bytes)
//! ```
//! Each chunk holds [`CHUNK`] bytes of plaintext (the last one up to that), sealed with its
//! own nonce; its additional authenticated data is `MAGIC || file id || chunk index (u64
//! big-endian) || last`. So chunks cannot be altered, reordered, moved between files or
//! dropped: a file always ends with a chunk marked last (empty only when the plaintext is),
//! and anything after it, or a missing last chunk, is an error. A plain RDB file starts with `REDIS`, never with [`MAGIC`], so readers tell
//! the two apart by the first bytes.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, BufWriter, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use aes_gcm::aead::{AeadCore, AeadInPlace, KeyInit, OsRng, rand_core::RngCore};
use aes_gcm::{Aes256Gcm, Nonce};

/// Marks an encrypted snapshot file; the last byte is the format version.
pub const MAGIC: &[u8; 16] = b"ECLOCAL-ATREST\x00\x01";
/// Plaintext bytes per chunk.
pub const CHUNK: usize = 1024 * 1024;
const FILE_ID_LEN: usize = 16;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const KEY_LEN: usize = 32;

/// The state dir's at-rest key. Debug output never shows it.
pub struct Key(Aes256Gcm);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    pub fn from_bytes(bytes: &[u8]) -> io::Result<Self> {
        Aes256Gcm::new_from_slice(bytes)
            .map(Key)
            .map_err(|_| io::Error::new(ErrorKind::InvalidData, "the at-rest key must be 32 bytes"))
    }

    /// The key file of `state_dir`, made (0600) when there is none yet. Two processes or
    /// threads racing to make it agree on one: the file appears whole, by a hard link.
    pub fn load_or_create(state_dir: &Path) -> io::Result<Self> {
        let dir = state_dir.join("keys");
        let path = dir.join("at-rest.key");
        match std::fs::read(&path) {
            Ok(bytes) => return Self::from_bytes(&bytes),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        create_private_dir(&dir)?;
        let mut bytes = [0u8; KEY_LEN];
        OsRng.fill_bytes(&mut bytes);
        let temp = dir.join(format!("at-rest.key.{}.{:x}.tmp", std::process::id(), OsRng.next_u64()));
        let written = (|| {
            let mut file = private_file(&temp)?;
            file.write_all(&bytes)?;
            file.sync_all()
        })();
        let linked = written.and_then(|()| std::fs::hard_link(&temp, &path));
        let _ = std::fs::remove_file(&temp);
        match linked {
            Ok(()) => {
                tracing::info!(path = %path.display(), "created the at-rest encryption key");
                Self::from_bytes(&bytes)
            }
            // Someone else made it first: theirs is the key.
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Self::from_bytes(&std::fs::read(&path)?),
            Err(e) => Err(e),
        }
    }
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

fn private_file(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// The key of a state dir, loaded (or made) on first need and then kept.
#[derive(Debug)]
pub struct KeyStore {
    state_dir: PathBuf,
    key: Mutex<Option<Arc<Key>>>,
}

impl KeyStore {
    pub fn new(state_dir: &Path) -> Self {
        Self { state_dir: state_dir.to_path_buf(), key: Mutex::new(None) }
    }

    pub fn get(&self) -> io::Result<Arc<Key>> {
        let mut slot = self.key.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(key) = slot.as_ref() {
            return Ok(key.clone());
        }
        let key = Arc::new(Key::load_or_create(&self.state_dir)?);
        *slot = Some(key.clone());
        Ok(key)
    }
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, format!("encrypted snapshot file: {message}"))
}

fn aad(file_id: &[u8; FILE_ID_LEN], index: u64, last: bool) -> [u8; 16 + FILE_ID_LEN + 9] {
    let mut aad = [0u8; 16 + FILE_ID_LEN + 9];
    aad[..16].copy_from_slice(MAGIC);
    aad[16..16 + FILE_ID_LEN].copy_from_slice(file_id);
    aad[16 + FILE_ID_LEN..16 + FILE_ID_LEN + 8].copy_from_slice(&index.to_be_bytes());
    aad[16 + FILE_ID_LEN + 8] = u8::from(last);
    aad
}

/// Reads until `buf` is full or the input ends; returns how much was read.
fn fill(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Encrypts everything `input` holds into `output`; returns the plaintext's size.
pub fn encrypt(key: &Key, mut input: impl Read, mut output: impl Write) -> io::Result<u64> {
    let mut file_id = [0u8; FILE_ID_LEN];
    OsRng.fill_bytes(&mut file_id);
    output.write_all(MAGIC)?;
    output.write_all(&file_id)?;
    let mut total = 0u64;
    let mut buf = vec![0u8; CHUNK];
    // One byte of lookahead tells whether a full chunk is the last one.
    let mut carry: Option<u8> = None;
    for index in 0u64.. {
        let start = match carry.take() {
            Some(byte) => {
                buf[0] = byte;
                1
            }
            None => 0,
        };
        let len = start + fill(&mut input, &mut buf[start..])?;
        let last = if len < CHUNK {
            true
        } else {
            let mut next = [0u8; 1];
            match fill(&mut input, &mut next)? {
                0 => true,
                _ => {
                    carry = Some(next[0]);
                    false
                }
            }
        };
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let mut sealed = Vec::with_capacity(len + TAG_LEN);
        sealed.extend_from_slice(&buf[..len]);
        key.0
            .encrypt_in_place(&nonce, &aad(&file_id, index, last), &mut sealed)
            .map_err(|_| io::Error::other("encrypting a snapshot chunk failed"))?;
        output.write_all(&nonce)?;
        output.write_all(&[u8::from(last)])?;
        output.write_all(&(sealed.len() as u32).to_le_bytes())?;
        output.write_all(&sealed)?;
        total += len as u64;
        if last {
            break;
        }
    }
    output.flush()?;
    Ok(total)
}

/// Decrypts a whole encrypted file from `input` (MAGIC included) into `output`; returns
/// the plaintext's size. Fails on a tampered, truncated or extended file, or the wrong key.
pub fn decrypt(key: &Key, mut input: impl Read, mut output: impl Write) -> io::Result<u64> {
    let mut header = [0u8; 16 + FILE_ID_LEN];
    if fill(&mut input, &mut header)? < header.len() {
        return Err(invalid("truncated header"));
    }
    if &header[..16] != MAGIC {
        return Err(invalid("not an encrypted snapshot file (or an unknown version)"));
    }
    let mut file_id = [0u8; FILE_ID_LEN];
    file_id.copy_from_slice(&header[16..]);
    let mut total = 0u64;
    let mut sealed = Vec::with_capacity(CHUNK + TAG_LEN);
    for index in 0u64.. {
        let mut frame = [0u8; NONCE_LEN + 1 + 4];
        match fill(&mut input, &mut frame)? {
            0 => return Err(invalid("truncated: the last chunk is missing")),
            n if n < frame.len() => return Err(invalid("truncated chunk header")),
            _ => {}
        }
        let nonce = *Nonce::from_slice(&frame[..NONCE_LEN]);
        let last = match frame[NONCE_LEN] {
            0 => false,
            1 => true,
            _ => return Err(invalid("corrupt chunk header")),
        };
        let len = u32::from_le_bytes([frame[13], frame[14], frame[15], frame[16]]) as usize;
        // Only the last chunk may be short.
        if !(TAG_LEN..=CHUNK + TAG_LEN).contains(&len) || (!last && len != CHUNK + TAG_LEN) {
            return Err(invalid("corrupt chunk length"));
        }
        sealed.resize(len, 0);
        if fill(&mut input, &mut sealed)? < len {
            return Err(invalid("truncated chunk"));
        }
        key.0
            .decrypt_in_place(&nonce, &aad(&file_id, index, last), &mut sealed)
            .map_err(|_| invalid("authentication failed (tampered, reordered or another key)"))?;
        output.write_all(&sealed)?;
        total += sealed.len() as u64;
        if last {
            let mut extra = [0u8; 1];
            if fill(&mut input, &mut extra)? != 0 {
                return Err(invalid("data after the last chunk"));
            }
            break;
        }
    }
    output.flush()?;
    Ok(total)
}

/// Whether the file at `path` is in the encrypted format.
pub fn is_encrypted(path: &Path) -> io::Result<bool> {
    let mut head = [0u8; 16];
    let n = fill(&mut File::open(path)?, &mut head)?;
    Ok(n == head.len() && &head == MAGIC)
}

/// Copies `from` to `to` (its directory made as needed), decrypting `from` when it is
/// encrypted and encrypting the result when `encrypt` says so; returns the plaintext's size.
/// The output goes to a temporary file beside `to`, renamed once complete, so `to` is never
/// seen half-written and plaintext never lands where only ciphertext should. Blocking: run it
/// off the async workers.
pub fn transfer(keys: &KeyStore, from: &Path, to: &Path, encrypt_output: bool) -> io::Result<u64> {
    let dir = to.parent().ok_or_else(|| io::Error::new(ErrorKind::InvalidInput, "target has no directory"))?;
    std::fs::create_dir_all(dir)?;
    let name = to.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temp = dir.join(format!(".{name}.{:x}.partial", OsRng.next_u64()));
    let result = (|| {
        let source_encrypted = is_encrypted(from)?;
        let input = BufReader::with_capacity(CHUNK, File::open(from)?);
        let file = OpenOptions::new().write(true).create_new(true).open(&temp)?;
        let mut output = BufWriter::with_capacity(CHUNK, file);
        let size = match (source_encrypted, encrypt_output) {
            (false, false) => io::copy(&mut { input }, &mut output)?,
            (false, true) => encrypt(&*keys.get()?, input, &mut output)?,
            (true, false) => decrypt(&*keys.get()?, input, &mut output)?,
            // A copy of an encrypted file under the same key: the bytes as they are (each
            // file is sealed on its own), checked on the way so a damaged file is not copied.
            (true, true) => {
                let key = keys.get()?;
                let size = decrypt(&key, BufReader::with_capacity(CHUNK, File::open(from)?), io::sink())?;
                io::copy(&mut { input }, &mut output)?;
                size
            }
        };
        let file = output.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&temp, to)?;
        Ok(size)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// The whole RDB data of a file, decrypted when it is encrypted. Blocking.
pub fn read_plain(keys: &KeyStore, from: &Path) -> io::Result<Vec<u8>> {
    if !is_encrypted(from)? {
        return std::fs::read(from);
    }
    let mut plain = Vec::new();
    decrypt(&*keys.get()?, BufReader::with_capacity(CHUNK, File::open(from)?), &mut plain)?;
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        let mut bytes = [0u8; KEY_LEN];
        OsRng.fill_bytes(&mut bytes);
        Key::from_bytes(&bytes).expect("32 bytes")
    }

    fn sealed(key: &Key, plain: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        assert_eq!(encrypt(key, plain, &mut out).expect("encrypt"), plain.len() as u64);
        out
    }

    fn opened(key: &Key, file: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        decrypt(key, file, &mut out)?;
        Ok(out)
    }

    fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn round_trips_every_size_around_chunk_boundaries() {
        let key = key();
        for len in [0, 1, 100, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 2 * CHUNK + 7] {
            let plain = sample(len);
            let file = sealed(&key, &plain);
            assert!(file.starts_with(MAGIC));
            assert!(!file.starts_with(b"REDIS"));
            assert_eq!(opened(&key, &file).expect("decrypt"), plain, "length {len}");
        }
    }

    #[test]
    fn plaintext_does_not_show_and_nonces_differ() {
        let key = key();
        let plain = b"REDIS0011 secret-value-in-clear".repeat(10);
        let a = sealed(&key, &plain);
        let b = sealed(&key, &plain);
        assert_ne!(a, b, "a fresh file id and nonces every time");
        assert!(!a.windows(b"secret-value".len()).any(|w| w == b"secret-value"));
    }

    #[test]
    fn tampering_is_detected() {
        let key = key();
        let file = sealed(&key, &sample(CHUNK + 1000));
        // A flipped bit in the header, a nonce, the last flag, a length and the ciphertext.
        for at in [3, 20, 40, 44, 45, 100, CHUNK / 2, file.len() - 1] {
            let mut bad = file.clone();
            bad[at] ^= 0x01;
            assert!(opened(&key, &bad).is_err(), "flip at {at}");
        }
        assert!(opened(&self::key(), &file).is_err(), "another key");
    }

    #[test]
    fn truncation_and_extension_are_detected() {
        let key = key();
        let plain = sample(2 * CHUNK);
        let file = sealed(&key, &plain);
        let chunk_frame = NONCE_LEN + 1 + 4 + CHUNK + TAG_LEN;
        let header = MAGIC.len() + FILE_ID_LEN;
        // Cut in the last chunk, at a chunk boundary (the last chunk dropped), in a chunk header,
        // in the file header.
        for len in [file.len() - 1, header + chunk_frame, header + chunk_frame + 5, header + 10, 10, 0] {
            assert!(opened(&key, &file[..len]).is_err(), "cut at {len}");
        }
        let mut longer = file.clone();
        longer.push(0);
        assert!(opened(&key, &longer).is_err(), "trailing data");
        // Chunks swapped.
        let mut swapped = file[..header].to_vec();
        swapped.extend_from_slice(&file[header + chunk_frame..header + 2 * chunk_frame]);
        swapped.extend_from_slice(&file[header..header + chunk_frame]);
        swapped.extend_from_slice(&file[header + 2 * chunk_frame..]);
        assert!(opened(&key, &swapped).is_err(), "reordered chunks");
    }

    #[test]
    fn the_key_is_made_once_private_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = KeyStore::new(dir.path());
        let file = sealed(&store.get().expect("key"), b"REDIS0011 data");
        let path = dir.path().join("keys").join("at-rest.key");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("key file").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Another process (a restart) reads the same key.
        let again = Key::load_or_create(dir.path()).expect("key");
        assert_eq!(opened(&again, &file).expect("decrypt"), b"REDIS0011 data");
        assert_eq!(std::fs::read_dir(dir.path().join("keys")).expect("dir").count(), 1, "no temp files left");
        assert!(format!("{:?}", again).contains(".."));
    }

    #[test]
    fn transfer_encrypts_decrypts_and_copies() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = KeyStore::new(dir.path());
        let plain = sample(CHUNK + 5);
        let rdb = dir.path().join("dump.rdb");
        std::fs::write(&rdb, &plain).expect("write");
        let enc = dir.path().join("snap").join("0001.rdb");
        assert_eq!(transfer(&keys, &rdb, &enc, true).expect("encrypt"), plain.len() as u64);
        assert!(is_encrypted(&enc).expect("read"));
        let copy = dir.path().join("copy").join("0001.rdb");
        assert_eq!(transfer(&keys, &enc, &copy, true).expect("copy"), plain.len() as u64);
        assert!(is_encrypted(&copy).expect("read"));
        assert_eq!(read_plain(&keys, &copy).expect("read"), plain);
        assert_eq!(read_plain(&keys, &rdb).expect("read"), plain);
        let out = dir.path().join("export").join("x.rdb");
        transfer(&keys, &copy, &out, false).expect("decrypt");
        assert_eq!(std::fs::read(&out).expect("read"), plain);
        let plain_copy = dir.path().join("plain").join("0001.rdb");
        transfer(&keys, &rdb, &plain_copy, false).expect("copy");
        assert_eq!(std::fs::read(&plain_copy).expect("read"), plain);
        // No partial files anywhere.
        for sub in ["snap", "copy", "export", "plain"] {
            assert_eq!(std::fs::read_dir(dir.path().join(sub)).expect("dir").count(), 1);
        }
        // A damaged source leaves no target behind.
        let mut bad = std::fs::read(&enc).expect("read");
        let last = bad.len() - 1;
        bad[last] ^= 1;
        std::fs::write(&enc, bad).expect("write");
        let target = dir.path().join("bad").join("0001.rdb");
        assert!(transfer(&keys, &enc, &target, false).is_err());
        assert_eq!(std::fs::read_dir(dir.path().join("bad")).expect("dir").count(), 0);
    }
}
