//! Function packages: `<packages>/<function>/bootstrap.zip`, as
//! `scripts/package-functions.sh` (cargo-lambda) builds them. The Lambda architecture is
//! read from the packaged `bootstrap` ELF header, so the deployment always declares what
//! was actually built; the SHA-256 is compared with the deployed code's `CodeSha256`.

use crate::error::{Error, Result};
use aws_sdk_lambda::types::Architecture;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

pub const BUILD_COMMAND: &str = "scripts/package-functions.sh";

#[derive(Clone)]
pub struct Package {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    /// Base64 of the zip's SHA-256, the form Lambda reports as `CodeSha256`.
    pub sha256: String,
    pub architecture: Architecture,
}

impl std::fmt::Debug for Package {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Package")
            .field("path", &self.path)
            .field("bytes", &self.bytes.len())
            .field("sha256", &self.sha256)
            .field("architecture", &self.architecture)
            .finish()
    }
}

pub fn path(dir: &Path, function: &str) -> PathBuf {
    dir.join(function).join("bootstrap.zip")
}

/// Reads and checks one package; every problem names the file and the build command.
pub fn load(dir: &Path, function: &str) -> Result<Package> {
    let path = path(dir, function);
    let bad = |why: String| {
        Error::Invalid(format!(
            "function package {} {why}: build the packages with {BUILD_COMMAND} (or point --packages at them)",
            path.display()
        ))
    };
    let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => bad("is missing".into()),
        _ => bad(format!("cannot be read ({e})")),
    })?;
    let architecture = architecture_of(&bytes).map_err(bad)?;
    let sha256 = code_sha256(&bytes);
    Ok(Package {
        path,
        bytes,
        sha256,
        architecture,
    })
}

/// Base64 of the SHA-256 of `bytes`, as Lambda reports `CodeSha256`.
pub fn code_sha256(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(bytes))
}

/// The Lambda architecture of the zip's `bootstrap` executable.
fn architecture_of(zip_bytes: &[u8]) -> std::result::Result<Architecture, String> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(zip_bytes))
        .map_err(|e| format!("is not a zip archive ({e})"))?;
    let mut entry = zip
        .by_name("bootstrap")
        .map_err(|_| "holds no bootstrap executable".to_string())?;
    let mut header = [0u8; 20];
    entry
        .read_exact(&mut header)
        .map_err(|_| "holds a bootstrap too short to be a program".to_string())?;
    elf_architecture(&header)
}

/// ELF magic, 64-bit, little-endian, then `e_machine` at byte 18.
fn elf_architecture(header: &[u8; 20]) -> std::result::Result<Architecture, String> {
    if &header[..4] != b"\x7fELF" || header[4] != 2 || header[5] != 1 {
        return Err("holds a bootstrap that is not a 64-bit little-endian Linux program".into());
    }
    match u16::from_le_bytes([header[18], header[19]]) {
        183 => Ok(Architecture::Arm64),
        62 => Ok(Architecture::X8664),
        other => Err(format!(
            "holds a bootstrap for machine type {other}, which Lambda does not run"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn zip_with(name: &str, content: &[u8]) -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        let mut w = zip::ZipWriter::new(&mut out);
        w.start_file(name, zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(content).unwrap();
        w.finish().unwrap();
        out.into_inner()
    }

    fn elf(machine: u16) -> Vec<u8> {
        let mut h = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0];
        h.resize(18, 0);
        h.extend_from_slice(&machine.to_le_bytes());
        h.extend_from_slice(&[0; 44]);
        h
    }

    #[test]
    fn the_architecture_comes_from_the_bootstrap_elf_header() {
        assert_eq!(
            architecture_of(&zip_with("bootstrap", &elf(183))),
            Ok(Architecture::Arm64)
        );
        assert_eq!(
            architecture_of(&zip_with("bootstrap", &elf(62))),
            Ok(Architecture::X8664)
        );
        assert!(
            architecture_of(&zip_with("bootstrap", &elf(40)))
                .unwrap_err()
                .contains("machine type 40")
        );
        assert!(
            architecture_of(&zip_with("main", &elf(183)))
                .unwrap_err()
                .contains("no bootstrap")
        );
        assert!(
            architecture_of(&zip_with(
                "bootstrap",
                b"#!/bin/sh\necho a shell script, not a program\n"
            ))
            .unwrap_err()
            .contains("not a 64-bit")
        );
        assert!(
            architecture_of(b"not a zip")
                .unwrap_err()
                .contains("not a zip")
        );
    }

    #[test]
    fn a_missing_package_names_the_build_command() {
        let dir = tempfile::tempdir().unwrap();
        let err = load(dir.path(), "validator").unwrap_err().to_string();
        assert!(err.contains("validator/bootstrap.zip is missing"), "{err}");
        assert!(err.contains(BUILD_COMMAND), "{err}");
    }

    #[test]
    fn the_hash_is_lambdas_code_sha256() {
        // FIPS 180-2 test vector for "abc", base64-encoded.
        assert_eq!(
            code_sha256(b"abc"),
            "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
        );
    }
}
