//! A serve measuring toward another serve when its coordinator asks (`measure_to`): two real
//! serves on loopback, each with a token of its own, and a coordinator that is the crate's own
//! control client.

use std::time::Duration;

use xferbench::control::{Client, MeasureToRequest, MeasuredTo, PeerTest};
use xferbench::measure::{Direction, TransportKind, Workload};
use xferbench::transport::{Peer, serve_client};

use crate::common::{Hosts, Served, assert_empty_dir, wait_until};

const TOKEN_A: &str = "token-of-serve-a";
const TOKEN_B: &str = "token-of-serve-b";

/// Serve A (asked) and serve B (its peer), each on a scratch root with its own token.
fn two_serves() -> (Served, Served) {
    let a = Hosts::loopback().served(&["--token", TOKEN_A]);
    let b = Hosts::loopback().served(&["--token", TOKEN_B]);
    (a, b)
}

/// The coordinator's client of `server`, holding `token`.
fn coordinator(server: &Served, token: Option<&str>) -> Client {
    client_of(&server.addr, token)
}

/// A control client of the serve at `addr`, holding `token`.
fn client_of(addr: &str, token: Option<&str>) -> Client {
    serve_client(Peer::parse(addr).unwrap(), token.map(str::to_string)).unwrap()
}

/// Asks A, with A's token, to run `test` toward B, holding B's `token`.
fn ask(a: &Served, b: &Served, token: Option<&str>, test: PeerTest) -> anyhow::Result<MeasuredTo> {
    coordinator(a, Some(TOKEN_A)).measure_to(MeasureToRequest {
        peer: b.addr.clone(),
        token: token.map(str::to_string),
        test,
    })
}

fn net(via: TransportKind, streams: u32, direction: Direction) -> PeerTest {
    PeerTest::Net {
        via,
        streams,
        secs: 1.0,
        len: None,
        direction,
    }
}

/// Asserts the sender's then the receiver's figure of a net test moved bytes in time.
fn assert_net_figures(measured: &MeasuredTo) {
    let workloads: Vec<Workload> = measured.measurements.iter().map(|m| m.workload).collect();
    assert_eq!(
        workloads,
        vec![Workload::NetSend, Workload::NetReceive],
        "{measured:?}"
    );
    for m in &measured.measurements {
        assert!(
            m.bytes > 0 && m.secs > 0.0 && m.bytes_per_sec > 0.0,
            "{m:?}"
        );
    }
}

#[test]
fn a_serve_measures_net_over_tcp_toward_another_serve_when_its_coordinator_asks() {
    let (mut a, b) = two_serves();
    let measured = ask(
        &a,
        &b,
        Some(TOKEN_B),
        net(TransportKind::Tcp, 2, Direction::Upload),
    )
    .unwrap();
    assert_eq!(measured.peer, b.addr);
    assert_eq!(measured.path, TransportKind::Tcp);
    assert_net_figures(&measured);
    assert_eq!(measured.measurements[1].conditions.streams, Some(2));
    assert!(measured.peer_cpu.is_some(), "{measured:?}");
    let line = a
        .wait_for_line("measure net", Duration::from_secs(5))
        .expect("a log line for the peer test");
    assert!(line.contains(&b.addr) && line.contains("done in"), "{line}");
}

#[test]
fn a_serve_measures_net_over_udp_from_its_peer_when_asked_for_the_download() {
    let (a, b) = two_serves();
    let measured = ask(
        &a,
        &b,
        Some(TOKEN_B),
        net(TransportKind::Udp, 1, Direction::Download),
    )
    .unwrap();
    assert_eq!(measured.path, TransportKind::Udp);
    assert_net_figures(&measured);
    let datagrams = measured.datagrams.expect("a UDP test's losses");
    assert!(datagrams.sent > 0, "{datagrams:?}");
}

#[test]
fn a_serve_measures_latency_toward_another_serve() {
    let (a, b) = two_serves();
    let measured = ask(
        &a,
        &b,
        Some(TOKEN_B),
        PeerTest::Lat {
            via: TransportKind::Tcp,
            size: 8,
            secs: 0.5,
        },
    )
    .unwrap();
    let latency = measured.latency.as_ref().expect("round trips");
    assert!(latency.samples > 0 && latency.min_us > 0.0, "{latency:?}");
    assert!(measured.measurements.is_empty(), "{measured:?}");
}

#[test]
fn a_peer_copy_lands_its_figure_and_leaves_no_file_in_either_root() {
    let (a, b) = two_serves();
    let measured = ask(
        &a,
        &b,
        Some(TOKEN_B),
        PeerTest::Copy {
            size: 8 << 20,
            streams: 2,
        },
    )
    .unwrap();
    assert_eq!(measured.measurements.len(), 1, "{measured:?}");
    let copy = &measured.measurements[0];
    assert_eq!(copy.workload, Workload::Copy);
    assert_eq!(copy.bytes, 8 << 20);
    assert!(copy.secs > 0.0, "{copy:?}");
    assert_empty_dir(&a.root);
    assert_empty_dir(&b.root);
}

#[test]
fn a_wrong_token_at_the_peer_is_an_error_naming_the_peer() {
    let (a, b) = two_serves();
    let err = ask(
        &a,
        &b,
        Some("not-b-s-token"),
        net(TransportKind::Tcp, 1, Direction::Upload),
    )
    .unwrap_err();
    let message = format!("{err:#}");
    assert!(
        message.contains(&b.addr) && message.contains("wrong token"),
        "{message}"
    );
    assert_eq!(message.lines().count(), 1, "{message}");
    a.assert_serves();
}

#[test]
fn a_peer_test_without_the_asked_serves_token_is_refused_and_reaches_no_peer() {
    let (a, mut b) = two_serves();
    let err = coordinator(&a, None)
        .measure_to(MeasureToRequest {
            peer: b.addr.clone(),
            token: Some(TOKEN_B.into()),
            test: net(TransportKind::Tcp, 1, Direction::Upload),
        })
        .unwrap_err();
    let message = format!("{err:#}");
    assert!(message.contains("missing token"), "{message}");
    assert!(
        b.wait_for_line("", Duration::from_millis(500)).is_none(),
        "the peer heard from it: {:?}",
        b.log()
    );
}

#[test]
fn an_unreachable_peer_is_an_error_naming_it() {
    let (a, _b) = two_serves();
    // Port 1 on loopback: nothing listens there.
    let err = coordinator(&a, Some(TOKEN_A))
        .measure_to(MeasureToRequest {
            peer: "127.0.0.1:1".into(),
            token: None,
            test: net(TransportKind::Tcp, 1, Direction::Upload),
        })
        .unwrap_err();
    let message = format!("{err:#}");
    assert!(
        message.contains("cannot connect to 127.0.0.1:1"),
        "{message}"
    );
    a.assert_serves();
}

#[test]
fn a_peer_test_holds_one_of_the_asked_serves_client_slots_until_it_ends() {
    let a = Hosts::loopback().served(&["--token", TOKEN_A, "--max-clients", "1"]);
    let b = Hosts::loopback().served(&["--token", TOKEN_B]);
    let (a_addr, b_addr) = (a.addr.clone(), b.addr.clone());
    let test = std::thread::spawn(move || {
        client_of(&a_addr, Some(TOKEN_A)).measure_to(MeasureToRequest {
            peer: b_addr,
            token: Some(TOKEN_B.into()),
            test: PeerTest::Net {
                via: TransportKind::Tcp,
                streams: 1,
                secs: 3.0,
                len: None,
                direction: Direction::Upload,
            },
        })
    });
    // A request that holds a slot only for a moment, until one finds the slot taken.
    let other = coordinator(&a, Some(TOKEN_A));
    let busy = wait_until(Duration::from_secs(10), || {
        other
            .remove_remote("nothing-here")
            .is_err_and(|err| format!("{err:#}").contains("busy"))
    });
    assert!(busy, "a second client was served during the peer test");
    let measured = test.join().unwrap().unwrap();
    assert_net_figures(&measured);
    assert!(!other.remove_remote("nothing-here").unwrap());
}
