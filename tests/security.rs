//! The agents' channel over TLS and mutual TLS, with certificates made by the test.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::*;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// A CA, a controller certificate for 127.0.0.1 and localhost, a client certificate signed
    /// by the CA, and a client certificate signed by another CA.
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params.clone(), KeyPair::generate().unwrap()).unwrap();
        let rogue_ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let write = |name: &str, text: String| std::fs::write(dir.path().join(name), text).unwrap();
        write("ca.pem", ca.pem());
        for (name, issuer, names) in [
            ("controller", &ca, vec!["127.0.0.1".to_owned(), "localhost".to_owned()]),
            ("agent", &ca, vec!["agent".to_owned()]),
            ("rogue", &rogue_ca, vec!["agent".to_owned()]),
        ] {
            let key = KeyPair::generate().unwrap();
            let certificate = CertificateParams::new(names).unwrap().signed_by(&key, issuer).unwrap();
            write(&format!("{name}.pem"), certificate.pem());
            write(&format!("{name}.key"), key.serialize_pem());
        }
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Starts a TLS controller that runs a one-VU scenario once one agent attached.
fn start_controller(pki: &Pki, dir: &Path, mutual: bool) -> (std::process::Child, String, PathBuf) {
    let scenario = write(
        dir,
        "tiny.yaml",
        "name: tiny\ntestserver: { port: 0 }\nload: { vus: 1, iterations: 1 }\nsteps:\n  - connect: { url: '${testserver.url}/echo' }\n  - send: { text: hi }\n  - receive: { timeout: 5s }\n  - close: {}\n",
    );
    let out = dir.join("summary.json");
    let mut command = wsfleet();
    command
        .args([
            "controller",
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--agents",
            "1",
            "--wait",
            "20s",
        ])
        .args([
            "--tls-cert",
            arg(&pki.path("controller.pem")),
            "--tls-key",
            arg(&pki.path("controller.key")),
        ])
        .args(["--run", arg(&scenario), "--out", &format!("json={}", out.display())])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("controller.err")).unwrap());
    if mutual {
        command.args(["--client-ca", arg(&pki.path("ca.pem"))]);
    }
    let mut child = command.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = sender.send(line);
    });
    let line = receiver.recv_timeout(Duration::from_secs(20)).unwrap();
    let url = line.trim().rsplit(' ').next().unwrap().to_owned();
    let errors = std::fs::read_to_string(dir.join("controller.err")).unwrap_or_default();
    assert!(url.starts_with("https://127.0.0.1:"), "{line}\n{errors}");
    (child, url, out)
}

#[test]
fn mutual_tls_agent_with_a_certificate_runs_and_others_are_refused() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let (mut controller, url, out) = start_controller(&pki, dir.path(), true);

    // No client certificate: the handshake is refused, and the agent says why.
    let mut bare = wsfleet();
    bare.args([
        "agent",
        "--controller",
        &url,
        "--once",
        "--ca",
        arg(&pki.path("ca.pem")),
    ]);
    let output = run_bounded(bare, Duration::from_secs(30));
    assert_eq!(output.status.code(), Some(4));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("cannot reach controller"), "{stderr}");
    assert!(stderr.contains("--cert and --key"), "{stderr}");

    // A certificate from another CA is refused too.
    let mut rogue = wsfleet();
    rogue.args([
        "agent",
        "--controller",
        &url,
        "--once",
        "--ca",
        arg(&pki.path("ca.pem")),
    ]);
    rogue.args([
        "--cert",
        arg(&pki.path("rogue.pem")),
        "--key",
        arg(&pki.path("rogue.key")),
    ]);
    let output = run_bounded(rogue, Duration::from_secs(30));
    assert_eq!(output.status.code(), Some(4), "{}", text(&output.stderr));

    // The right certificate attaches, and the run happens over the TLS channel.
    let mut agent = wsfleet()
        .args([
            "agent",
            "--controller",
            &url,
            "--once",
            "--workers",
            "1",
            "--ca",
            arg(&pki.path("ca.pem")),
        ])
        .args([
            "--cert",
            arg(&pki.path("agent.pem")),
            "--key",
            arg(&pki.path("agent.key")),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let status = wait_exit(&mut controller, Duration::from_secs(60));
    let _ = agent.kill();
    let _ = agent.wait();
    assert!(status.success(), "{status:?}");
    let summary = read_json(&out);
    assert_eq!(counter(&summary, "messages_received"), 1);
}

#[test]
fn agent_that_does_not_trust_the_controller_is_refused() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let (mut controller, url, _) = start_controller(&pki, dir.path(), false);
    // Trusting only the rogue CA's certificate: the controller's certificate does not verify.
    let mut agent = wsfleet();
    agent.args([
        "agent",
        "--controller",
        &url,
        "--once",
        "--ca",
        arg(&pki.path("rogue.pem")),
    ]);
    let output = run_bounded(agent, Duration::from_secs(30));
    let _ = controller.kill();
    let _ = controller.wait();
    assert_eq!(output.status.code(), Some(4));
    assert!(
        text(&output.stderr).contains("cannot reach controller"),
        "{}",
        text(&output.stderr)
    );
}
