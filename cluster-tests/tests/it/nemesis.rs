//! A nemesis run, as Jepsen's: clients write and read registers through every
//! node while the cluster's network is cut (a follower, the leader, a bridge,
//! every node) and nodes are killed. The recorded history must be
//! linearizable, and every acknowledged write must be in every node's
//! history once the faults end.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hpfriends_cluster_tests::linearizable::{check, Event, Op};
use hpfriends_cluster_tests::{hpfriends_bin, http_request, wait_for, Cluster, NodeProcess, DEADLINE};

const REGISTERS: usize = 2;
/// A client gives up on an answer after this; the write's outcome is then unknown.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(3);

/// Each register is a key's publish list of one channel, whose name is the value.
fn register(r: usize) -> String {
    format!("reg-{r}")
}

#[derive(Default)]
struct Recorded {
    /// (register, what the client saw)
    events: Vec<(usize, Event)>,
    acknowledged: Vec<String>,
}

/// Whether the request surely never reached the node (it was down).
fn not_sent(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused)
}

fn client(
    node: &NodeProcess,
    id: u64,
    start: Instant,
    stop: Arc<AtomicBool>,
    out: Arc<Mutex<Recorded>>,
) -> std::thread::JoinHandle<()> {
    let (addr, token) = (node.http_addr, node.token.clone());
    std::thread::spawn(move || {
        let now = || start.elapsed().as_micros() as u64;
        let mut seed = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut writes = 0;
        while !stop.load(Ordering::Relaxed) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let r = (seed % REGISTERS as u64) as usize;
            let call = now();
            if seed % 3 == 0 {
                writes += 1;
                let value = format!("c{id}w{writes}");
                let body = format!(r#"{{"publish": ["{value}"]}}"#);
                let path = format!("/api/v1/keys/{}", register(r));
                let ret = match http_request(addr, "PUT", &path, &token, &body, CLIENT_TIMEOUT) {
                    Ok((200, _)) => Some(now()),
                    Ok((status, body)) if (400..500).contains(&status) => panic!("write refused: {status} {body}"),
                    Err(e) if not_sent(&e) => {
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                    _ => None,
                };
                let mut out = out.lock().unwrap();
                if ret.is_some() {
                    out.acknowledged.push(value.clone());
                }
                out.events.push((r, Event { op: Op::Write(value), call, ret }));
            } else {
                let path = "/api/v1/keys?owner=nemesis&consistent=true";
                let Ok((200, body)) = http_request(addr, "GET", path, &token, "", CLIENT_TIMEOUT) else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                let ret = now();
                let keys: serde_json::Value = serde_json::from_str(&body).unwrap();
                let mut out = out.lock().unwrap();
                // One read of both registers, checked as a read of each.
                for key in keys["keys"].as_array().unwrap() {
                    let r: usize = key["ident"].as_str().unwrap().strip_prefix("reg-").unwrap().parse().unwrap();
                    let value = key["publish"][0].as_str().unwrap().to_string();
                    out.events.push((r, Event { op: Op::Read(value), call, ret: Some(ret) }));
                }
            }
            std::thread::sleep(Duration::from_millis(15));
        }
    })
}

/// Every change in `node`'s history, as text.
fn history(node: &NodeProcess) -> String {
    let mut all = String::new();
    let mut before = String::new();
    loop {
        let path = format!("/api/v1/history?limit=1000{before}");
        let (status, body) = http_request(node.http_addr, "GET", &path, &node.token, "", DEADLINE).unwrap();
        assert_eq!(status, 200, "{body}");
        let page: serde_json::Value = serde_json::from_str(&body).unwrap();
        all.push_str(&body);
        match page["next"].as_u64() {
            Some(next) => before = format!("&before={next}"),
            None => return all,
        }
    }
}

fn pause(s: f64) {
    std::thread::sleep(Duration::from_secs_f64(s));
}

#[test]
fn given_partitions_bridges_and_kills_then_the_history_is_linearizable_and_no_acknowledged_write_is_lost() {
    let mut c = Cluster::start(&hpfriends_bin(), 3, &[]).unwrap();
    c.wait_leader(DEADLINE).unwrap();
    c.node(1).ctl(&["user", "add", "nemesis"]).unwrap();
    for r in 0..REGISTERS {
        let key = format!(r#"{{"ident": "{}", "owner": "nemesis", "publish": ["init"]}}"#, register(r));
        let (status, body) =
            http_request(c.node(1).http_addr, "POST", "/api/v1/keys", &c.node(1).token, &key, DEADLINE).unwrap();
        assert_eq!(status, 200, "{body}");
    }

    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let recorded = Arc::new(Mutex::new(Recorded::default()));
    let clients: Vec<_> = (1..=3u64)
        .flat_map(|n| [n, n + 3])
        .map(|id| client(c.node((id - 1) % 3 + 1), id, start, stop.clone(), recorded.clone()))
        .collect();

    let mut faults = Vec::new();
    let mut fault = |what: String| {
        println!("{:>6.1} s  {what}", start.elapsed().as_secs_f64());
        faults.push(what);
    };
    pause(2.0);
    let leader = c.wait_leader(DEADLINE).unwrap();
    let follower = (1..=3).find(|n| *n != leader).unwrap();
    fault(format!("isolate follower {follower}"));
    c.partition(follower).unwrap();
    pause(4.0);
    c.heal();
    pause(2.0);

    let leader = c.wait_leader(DEADLINE).unwrap();
    fault(format!("isolate leader {leader}"));
    c.partition(leader).unwrap();
    let cut_at = Instant::now();
    let (a, b) = {
        let mut others = (1..=3).filter(|n| *n != leader);
        (others.next().unwrap(), others.next().unwrap())
    };
    let elected = wait_for("the two others to elect a leader", DEADLINE, || {
        let of = |n: u64| c.nodes[n as usize - 1].status().ok()?["leader"].as_u64();
        of(a).filter(|l| *l != leader && of(b) == Some(*l))
    })
    .unwrap();
    println!("         node {elected} leads {:?} after the leader was cut off", cut_at.elapsed());
    pause(2.0);
    c.heal();
    pause(3.0);

    let leader = c.wait_leader(DEADLINE).unwrap();
    let other = (1..=3).find(|n| *n != leader).unwrap();
    fault(format!("bridge: cut {leader} from {other}, both still reach the third"));
    c.cut(leader, other).unwrap();
    pause(4.0);
    c.heal();
    pause(2.0);

    fault("no quorum: every node cut from the others".into());
    for n in 1..=3 {
        c.partition(n).unwrap();
    }
    pause(3.0);
    c.heal();
    pause(3.0);

    let leader = c.wait_leader(DEADLINE).unwrap();
    fault(format!("SIGKILL leader {leader}"));
    c.node(leader).kill();
    pause(3.0);
    c.node(leader).restart().unwrap();
    pause(3.0);

    let leader = c.wait_leader(DEADLINE).unwrap();
    let follower = (1..=3).find(|n| *n != leader).unwrap();
    fault(format!("SIGKILL follower {follower}"));
    c.node(follower).kill();
    pause(2.0);
    c.node(follower).restart().unwrap();
    pause(3.0);

    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    let recorded = std::mem::take(&mut *recorded.lock().unwrap());
    let unknown = recorded.events.iter().filter(|(_, e)| e.ret.is_none()).count();
    let reads = recorded.events.iter().filter(|(_, e)| matches!(e.op, Op::Read(_))).count();
    println!(
        "{} operations in {:.1} s: {} writes acknowledged, {unknown} without an answer, {reads} register reads; faults: {faults:?}",
        recorded.events.len(),
        start.elapsed().as_secs_f64(),
        recorded.acknowledged.len(),
    );
    assert!(recorded.acknowledged.len() > 50 && reads > 100, "too little happened to check anything");

    for r in 0..REGISTERS {
        let of_r: Vec<Event> = recorded.events.iter().filter(|(x, _)| *x == r).map(|(_, e)| e.clone()).collect();
        let checked = Instant::now();
        check(&of_r, "init").unwrap_or_else(|e| panic!("register {r}: {e}"));
        println!("register {r}: {} operations linearizable (checked in {:?})", of_r.len(), checked.elapsed());
    }

    c.wait_leader(DEADLINE).unwrap();
    for (i, node) in c.nodes.iter().enumerate() {
        wait_for(&format!("every acknowledged write in node {}'s history", i + 1), DEADLINE, || {
            let history = history(node);
            recorded.acknowledged.iter().all(|v| history.contains(&format!("\"{v}\""))).then_some(())
        })
        .unwrap();
    }
}
