//! `petrel-info` against a real petreld: values, `-l`, several hosts, errors and exit status.
use petrel_tests::{petreld_path, Petreld};

fn petrel_info(args: &[&str]) -> (i32, String, String) {
    petrel_tests::run_tool(env!("CARGO_BIN_EXE_petrel-info-test"), args)
}

#[test]
fn asks_like_asinfo() {
    let a = Petreld::start(&petreld_path!(), &[], &[]);
    let b = Petreld::start(&petreld_path!(), &[], &[]);
    let port = a.addr.port().to_string();

    let (code, out, _) = petrel_info(&["-h", "127.0.0.1", "-p", &port]);
    assert_eq!((code, out.as_str()), (0, "ok\n"), "no command asks status");
    let (code, out, _) = petrel_info(&["-p", &port, "-v", "namespaces"]);
    assert_eq!((code, out.as_str()), (0, "test\n"));
    let (code, out, _) = petrel_info(&["-p", &port, "-v", "namespace/test", "-l"]);
    assert_eq!(code, 0);
    assert!(out.lines().any(|l| l == "objects=0"), "{out}");
    assert!(out.lines().count() > 10);

    // Several hosts: each answer under its address.
    let (code, out, _) = petrel_info(&["-h", &a.seed(), "-h", &b.seed(), "-v", "node"]);
    assert_eq!(code, 0);
    assert!(out.contains(&a.seed()) && out.contains(&b.seed()), "{out}");
    assert_eq!(out.lines().count(), 4);

    // An error answer and an unreachable host both exit non-zero.
    let (code, out, _) = petrel_info(&["-p", &port, "-v", "no-such-command"]);
    assert_eq!((code, out.trim()), (1, "ERROR:4:unrecognized command"));
    let dead = petrel_tests::free_port().to_string();
    let (code, _, err) = petrel_info(&["-p", &dead, "-t", "500"]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot connect"), "{err}");
}
