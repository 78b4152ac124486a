//! The deployable packages: `target/lambda/<function>/bootstrap.zip` for each payment
//! function, as `scripts/package-functions.sh` builds them (the README's test command
//! runs it first). Each zip must hold one executable `bootstrap` that is an arm64 ELF
//! (the architecture the deployment declares) needing no glibc symbol newer than 2.34,
//! the `provided.al2023` runtime's. A missing package fails, naming the build command.

use object::elf;
use object::read::elf::{ElfFile64, FileHeader};
use std::io::Read;
use std::path::PathBuf;

const FUNCTIONS: [&str; 3] = ["validator", "processor", "audit-logger"];
/// glibc of Amazon Linux 2023 (`provided.al2023`).
const MAX_GLIBC: (u32, u32) = (2, 34);

fn package(function: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(|d| root.join(d))
        .unwrap_or_else(|| root.join("target"));
    target.join("lambda").join(function).join("bootstrap.zip")
}

/// The zip's single entry `bootstrap`: its bytes and unix mode.
fn bootstrap(function: &str) -> (Vec<u8>, u32) {
    let path = package(function);
    let file = std::fs::File::open(&path).unwrap_or_else(|e| {
        panic!(
            "{} ({e}): build the packages with scripts/package-functions.sh (the README's test command does)",
            path.display()
        )
    });
    let mut zip = zip::ZipArchive::new(file).expect("a zip archive");
    let names: Vec<String> = zip
        .file_names()
        .map(|n| n.expect("a readable entry name").into_owned())
        .collect();
    assert_eq!(names, ["bootstrap"], "{}", path.display());
    let mut entry = zip.by_name("bootstrap").unwrap();
    let mode = entry.unix_mode().expect("unix permissions recorded");
    let mut bytes = Vec::new();
    entry.read_to_end(&mut bytes).unwrap();
    (bytes, mode)
}

/// The `GLIBC_x.y` versions the binary's dynamic symbols need.
fn glibc_needs(bin: &[u8]) -> Vec<(u32, u32)> {
    let file = ElfFile64::<object::Endianness>::parse(bin).expect("a 64-bit ELF");
    let endian = file.endian();
    let sections = file.elf_section_table();
    let Some((mut needs, link)) = sections.gnu_verneed(endian, bin).unwrap() else {
        return Vec::new();
    };
    let strings = sections.strings(endian, bin, link).unwrap();
    let mut versions = Vec::new();
    while let Some((_, mut aux)) = needs.next().unwrap() {
        while let Some(a) = aux.next().unwrap() {
            let name = String::from_utf8_lossy(a.name(endian, strings).unwrap()).into_owned();
            if let Some(v) = name.strip_prefix("GLIBC_") {
                let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
                versions.push((parts.next().unwrap_or(0), parts.next().unwrap_or(0)));
            }
        }
    }
    versions.sort();
    versions.dedup();
    versions
}

#[test]
fn glibc_versions_are_read_from_the_elf_version_needs() {
    // The test binary itself is a dynamically linked ELF on Linux: it needs glibc 2.2.5+.
    let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    let needs = glibc_needs(&me);
    assert!(!needs.is_empty(), "no GLIBC_ version needs found");
    assert!(needs.iter().all(|&(major, _)| major == 2), "{needs:?}");
}

#[test]
fn each_function_is_packaged_as_an_arm64_bootstrap_for_provided_al2023() {
    for function in FUNCTIONS {
        let (bin, mode) = bootstrap(function);
        assert_eq!(
            mode & 0o111,
            0o111,
            "{function}: bootstrap is not executable ({mode:o})"
        );
        let file = ElfFile64::<object::Endianness>::parse(&*bin)
            .unwrap_or_else(|e| panic!("{function}: bootstrap is not a 64-bit ELF: {e}"));
        let header = file.elf_header();
        assert_eq!(
            header.e_machine(file.endian()),
            elf::EM_AARCH64,
            "{function}: not an arm64 binary"
        );
        let needs = glibc_needs(&bin);
        assert!(
            !needs.is_empty(),
            "{function}: expected a glibc-linked binary"
        );
        let newest = needs.last().copied().unwrap_or_default();
        assert!(
            newest <= MAX_GLIBC,
            "{function}: needs GLIBC_{}.{}, newer than provided.al2023's {}.{}",
            newest.0,
            newest.1,
            MAX_GLIBC.0,
            MAX_GLIBC.1
        );
        // A release build: small enough to upload directly (50 MB zipped is Lambda's limit).
        let zipped = std::fs::metadata(package(function)).unwrap().len();
        assert!(zipped < 20 << 20, "{function}: {zipped} bytes zipped");
    }
}
