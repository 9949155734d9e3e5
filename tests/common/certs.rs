//! Test certificates made with openssl: a private CA, and certificates it signs for a server
//! (with its IP address as subject alternative name) or a client.

use std::path::Path;
use std::process::{Command, Stdio};

fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "openssl {args:?}");
}

/// A CA in `dir`: `{name}.pem` and `{name}.key`.
pub fn ca(dir: &Path, name: &str) {
    let (pem, key) = (format!("{name}.pem"), format!("{name}.key"));
    let subject = format!("/CN={name}");
    openssl(
        dir,
        &[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", &subject,
            "-keyout", &key, "-out", &pem,
        ],
    );
}

/// A certificate `{name}.pem` with key `{name}.key` in `dir`, signed by the CA `ca`, for the
/// common name `cn`; a server certificate names `127.0.0.1` as its address.
pub fn signed(dir: &Path, ca: &str, name: &str, cn: &str, server: bool) {
    let (pem, key, csr) = (
        format!("{name}.pem"),
        format!("{name}.key"),
        format!("{name}.csr"),
    );
    let subject = format!("/CN={cn}");
    openssl(
        dir,
        &[
            "req", "-newkey", "rsa:2048", "-nodes", "-subj", &subject, "-keyout", &key, "-out",
            &csr,
        ],
    );
    let ext = format!("{name}.ext");
    let usage = match server {
        true => "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        false => "extendedKeyUsage=clientAuth\n",
    };
    std::fs::write(dir.join(&ext), usage).unwrap();
    let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &ext,
            "-out",
            &pem,
        ],
    );
}

/// A CA `ca` and a server certificate `server` for 127.0.0.1 signed by it.
pub fn server_set(dir: &Path) {
    ca(dir, "ca");
    signed(dir, "ca", "server", "127.0.0.1", true);
}

/// Lets every user read `dir` (brokers started as root drop their privileges).
pub fn readable(dir: &Path) {
    Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(dir)
        .status()
        .unwrap();
}
