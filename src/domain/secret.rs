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
pub struct PinKey {
    key: [u8; 32],
    /// HMAC keyed with it, its key blocks already hashed: each PIN check then hashes two blocks
    /// instead of four.
    keyed: Hmac<Sha256>,
}

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
        Ok(PinKey::from_bytes(key))
    }

    /// Reads the key at `path`, which must exist.
    pub fn load(path: &Path) -> io::Result<PinKey> {
        let bytes = fs::read(path)?;
        let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidData, format!("{} is not a 32-byte PIN key", path.display()))
        })?;
        Ok(PinKey::from_bytes(key))
    }

    /// Writes the key to a new file at `path`, owner read/write only; an existing file is
    /// left alone and refused.
    pub fn write_new(&self, path: &Path) -> io::Result<()> {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path)?;
        file.write_all(&self.key)?;
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

    /// The token of a patron's set-PIN link number `serial`: derived from the key, so that
    /// the store keeps only its digest and the e-mail is given the token when it is sent.
    pub fn link_token(&self, serial: u64) -> String {
        let mut mac = self.keyed.clone();
        mac.update(b"sip2d set-PIN link\0");
        mac.update(&serial.to_be_bytes());
        hex(&mac.finalize().into_bytes())
    }

    /// A short public name for the key (`sha256:` and 16 hex digits of a hash of it), written
    /// into exports so an import can tell whether their PIN hashes fit its register. It does
    /// not reveal the key.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        let digest = Sha256::new().chain_update(b"sip2d PIN key fingerprint\0").chain_update(self.key).finalize();
        format!("sha256:{}", hex(&digest[..8]))
    }

    fn mac(&self) -> Hmac<Sha256> {
        self.keyed.clone()
    }

    /// A key from its bytes (the key file's, or a test's).
    pub fn from_bytes(key: [u8; 32]) -> PinKey {
        let keyed =
            <Hmac<Sha256> as Mac>::new_from_slice(&key).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        PinKey { key, keyed }
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

/// What a staff bearer token starts with, so that a leaked one is recognisable (by secret
/// scanners, in logs).
pub const TOKEN_PREFIX: &str = "sip2d_";

/// A new bearer token: the prefix and 32 random bytes in hex. Shown once; only its
/// [`token_digest`] is kept.
pub fn new_token() -> io::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(io::Error::other)?;
    Ok(format!("{TOKEN_PREFIX}{}", hex(&bytes)))
}

/// A patron's link token: 256 random bits, hex, safe in a URL path.
pub fn link_token() -> io::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(io::Error::other)?;
    Ok(hex(&bytes))
}

/// Whether two secrets (tokens, digests, tags) are equal, in time that does not depend on
/// where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A bearer token's digest as kept (SHA-256, hex). A token has 256 random bits, so a fast
/// hash is enough: nothing is gained guessing against it.
pub fn token_digest(token: &str) -> String {
    use sha2::Digest;
    hex(&Sha256::digest(token.as_bytes()))
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Keyed digests of terminal passwords, under a key that lives only in this process: once a
/// password has passed Argon2, a later login with it costs one HMAC rather than another
/// deliberately slow hash. The digests are never stored or logged.
pub struct PasswordMemo {
    key: [u8; 32],
}

/// A password's digest under a [`PasswordMemo`]; `==` compares in constant time.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordDigest(hmac::digest::CtOutput<Hmac<Sha256>>);

impl std::fmt::Debug for PasswordDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordDigest(***)")
    }
}

impl PasswordMemo {
    /// A memo with a new random key.
    pub fn new() -> io::Result<PasswordMemo> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(io::Error::other)?;
        Ok(PasswordMemo { key })
    }

    /// The digest of `password` for the account `login` (the login is mixed in, so equal
    /// passwords of two accounts differ).
    pub fn digest(&self, login: &str, password: &str) -> PasswordDigest {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(&(login.len() as u64).to_be_bytes());
        mac.update(login.as_bytes());
        mac.update(password.as_bytes());
        PasswordDigest(mac.finalize())
    }
}

/// The most memory a terminal password's Argon2 hash may ask for, in KiB (64 MiB): an
/// imported hash demanding more is refused rather than honoured, so logins' memory stays
/// bounded. sip2d's own hashes use Argon2's default, 19 MiB.
pub const MAX_PASSWORD_KIB: u32 = 64 * 1024;

/// Argon2's working memory, reused from one verification to the next (see
/// [`verify_password_in`]).
pub type HashMemory = Vec<argon2::Block>;

/// Whether `password` matches an Argon2 hash, hashing in `memory` (grown as needed and kept,
/// so a server verifying logins does not allocate and free megabytes per login). A malformed
/// hash, or one asking for over [`MAX_PASSWORD_KIB`], matches nothing.
pub fn verify_password_in(password: &str, hash: &str, memory: &mut HashMemory) -> bool {
    let Ok(h) = PasswordHash::new(hash) else { return false };
    let (Some(salt), Some(expected)) = (h.salt, h.hash) else { return false };
    let Ok(algorithm) = argon2::Algorithm::try_from(h.algorithm) else { return false };
    let Ok(version) = h.version.map(argon2::Version::try_from).transpose() else { return false };
    let Ok(params) = argon2::Params::try_from(&h) else { return false };
    if params.m_cost() > MAX_PASSWORD_KIB {
        return false;
    }
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else { return false };
    let blocks = params.block_count();
    memory.resize(blocks, argon2::Block::default());
    let mut out = [0u8; argon2::password_hash::Output::MAX_LENGTH];
    let Some(out) = out.get_mut(..expected.len()) else { return false };
    let argon = Argon2::new(algorithm, version.unwrap_or_default(), params);
    if argon.hash_password_into_with_memory(password.as_bytes(), salt, out, &mut memory[..]).is_err() {
        return false;
    }
    // `Output`'s equality is constant-time.
    argon2::password_hash::Output::new(out).is_ok_and(|o| o == expected)
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
    fn password_digests_differ_by_account_password_and_key() {
        let memo = PasswordMemo::new().unwrap();
        let d = memo.digest("kiosk1", "s3cret");
        assert_eq!(d, memo.digest("kiosk1", "s3cret"));
        assert_ne!(d, memo.digest("kiosk1", "s3cret!"));
        assert_ne!(d, memo.digest("kiosk2", "s3cret"));
        // The login's length is mixed in: ("ab", "c") and ("a", "bc") differ.
        assert_ne!(memo.digest("ab", "c"), memo.digest("a", "bc"));
        assert_ne!(d, PasswordMemo::new().unwrap().digest("kiosk1", "s3cret"));
        assert_eq!(format!("{d:?}"), "PasswordDigest(***)");
    }

    #[test]
    fn a_password_verifies_in_reused_memory_as_it_does_alone() {
        let h = hash_password("s3cret").unwrap();
        let mut memory = HashMemory::new();
        assert!(verify_password_in("s3cret", &h, &mut memory));
        let kept = memory.capacity();
        assert!(kept >= 19 * 1024, "Argon2's default is 19 MiB of 1 KiB blocks: {kept}");
        assert!(!verify_password_in("s3cret!", &h, &mut memory));
        assert!(verify_password_in("s3cret", &h, &mut memory));
        assert_eq!(memory.capacity(), kept, "the memory is reused, not grown");
        assert!(!verify_password_in("s3cret", "$argon2id$not-a-hash", &mut memory));
        // A hash that asks for more memory than a login may use is refused untried.
        let greedy = h.replace("m=19456", "m=1048576");
        assert!(greedy.contains("m=1048576"), "{h}");
        assert!(!verify_password_in("s3cret", &greedy, &mut memory));
        assert_eq!(memory.capacity(), kept);
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
