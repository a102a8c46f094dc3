//! PINs and passwords at rest: a PIN is an HMAC-SHA-256 under the installation's secret key,
//! compared in constant time; a terminal password is an Argon2 hash.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::records::PinHash;

/// The installation's PIN key. Kept outside the store, readable by its owner only, so that a
/// copy of the store alone cannot be used to test PINs offline.
#[derive(Clone)]
pub struct PinKey([u8; 32]);

impl PinKey {
    /// Reads the key at `path`, creating it (owner read/write only) if it does not exist.
    pub fn load_or_create(path: &Path) -> io::Result<PinKey> {
        match PinKey::load(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let key = PinKey::generate()?;
                key.write_new(path)?;
                Ok(key)
            }
            other => other,
        }
    }

    /// A new random key.
    pub fn generate() -> io::Result<PinKey> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(io::Error::other)?;
        Ok(PinKey(key))
    }

    /// Reads the key at `path`, which must exist.
    pub fn load(path: &Path) -> io::Result<PinKey> {
        let bytes = fs::read(path)?;
        let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidData, format!("{} is not a 32-byte PIN key", path.display()))
        })?;
        Ok(PinKey(key))
    }

    /// Writes the key to a new file at `path`, owner read/write only; an existing file is
    /// left alone and refused.
    pub fn write_new(&self, path: &Path) -> io::Result<()> {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path)?;
        file.write_all(&self.0)?;
        file.sync_all()
    }

    /// Puts the key at `path` in place of what is there, atomically: a new owner-only file
    /// beside it, synced, then renamed over it.
    pub fn replace(&self, path: &Path) -> io::Result<()> {
        let tmp = path.with_extension("key.new");
        let _ = fs::remove_file(&tmp);
        self.write_new(&tmp)?;
        fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    /// A short public name for the key (`sha256:` and 16 hex digits of a hash of it), written
    /// into exports so an import can tell whether their PIN hashes fit its register. It does
    /// not reveal the key.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        let digest = Sha256::new().chain_update(b"sip2d PIN key fingerprint\0").chain_update(self.0).finalize();
        let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    }

    /// A key from bytes, for tests.
    pub fn from_bytes(key: [u8; 32]) -> PinKey {
        PinKey(key)
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC accepts keys of any length, so this cannot fail.
        <Hmac<Sha256> as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
    }

    /// The keyed hash of a PIN. The patron's id is mixed in, so equal PINs hash differently.
    pub fn hash(&self, patron: u64, pin: &str) -> PinHash {
        let mut mac = self.mac();
        mac.update(&patron.to_be_bytes());
        mac.update(pin.as_bytes());
        PinHash(mac.finalize().into_bytes().into())
    }

    /// Whether `pin` is the patron's PIN, compared in constant time.
    pub fn verify(&self, patron: u64, pin: &str, stored: &PinHash) -> bool {
        let mut mac = self.mac();
        mac.update(&patron.to_be_bytes());
        mac.update(pin.as_bytes());
        mac.verify_slice(&stored.0).is_ok()
    }
}

/// A random four-digit PIN, for staff who generate one and show it once.
pub fn generate_pin() -> io::Result<String> {
    let mut bytes = [0u8; 4];
    getrandom::fill(&mut bytes).map_err(io::Error::other)?;
    // 2^32 is not a multiple of 10,000; the bias (under 0.0003%) does not matter for a PIN.
    Ok(format!("{:04}", u32::from_be_bytes(bytes) % 10_000))
}

/// An Argon2 hash (PHC string) of a terminal password.
pub fn hash_password(password: &str) -> io::Result<String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(io::Error::other)?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| io::Error::other(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| io::Error::other(e.to_string()))
}

/// Whether `password` matches an Argon2 hash; a malformed hash matches nothing.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_verify_and_differ_per_patron_and_key() {
        let key = PinKey::from_bytes([7; 32]);
        let h = key.hash(1, "1234");
        assert!(key.verify(1, "1234", &h));
        assert!(!key.verify(1, "1235", &h));
        assert!(!key.verify(2, "1234", &h));
        assert_ne!(key.hash(2, "1234"), h);
        assert!(!PinKey::from_bytes([8; 32]).verify(1, "1234", &h));
        assert_eq!(format!("{h:?}"), "PinHash(***)");
    }

    #[test]
    fn the_key_file_is_created_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pin.key");
        let a = PinKey::load_or_create(&path).unwrap();
        let b = PinKey::load_or_create(&path).unwrap();
        assert_eq!(a.hash(1, "0000"), b.hash(1, "0000"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        fs::write(&path, b"short").unwrap();
        assert!(PinKey::load_or_create(&path).is_err());
    }

    #[test]
    fn a_key_is_written_owner_only_replaced_atomically_and_named_by_its_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pin.key");
        let a = PinKey::from_bytes([1; 32]);
        let b = PinKey::from_bytes([2; 32]);
        a.write_new(&path).unwrap();
        assert!(b.write_new(&path).is_err(), "an existing key is never overwritten by write_new");
        assert_eq!(PinKey::load(&path).unwrap().fingerprint(), a.fingerprint());
        b.replace(&path).unwrap();
        assert_eq!(PinKey::load(&path).unwrap().fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert!(a.fingerprint().starts_with("sha256:") && a.fingerprint().len() == 23, "{}", a.fingerprint());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert!(PinKey::load(&dir.path().join("none")).is_err());
    }

    #[test]
    fn generated_pins_are_four_digits() {
        for _ in 0..50 {
            let p = generate_pin().unwrap();
            assert!(p.len() == 4 && p.bytes().all(|b| b.is_ascii_digit()), "{p}");
        }
    }

    #[test]
    fn passwords_hash_with_argon2() {
        let h = hash_password("s3cret").unwrap();
        assert!(h.starts_with("$argon2"));
        assert!(verify_password("s3cret", &h));
        assert!(!verify_password("s3creT", &h));
        assert!(!verify_password("s3cret", "not a hash"));
    }
}
