//! Routing cost per published message: decode the PUBLISH, check the key,
//! look up readers, queue the shared frame for N local subscribers (and drain
//! their queues). Run on an empty graph and on the large generated graph
//! (100k users, 1M shares): the cost must not grow with the graph.
//!
//! cargo bench -p hpfriends --bench routing

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hpfriends_broker::cluster::peers::Peers;
use hpfriends_broker::hpfeeds::outbound::{outbound, OutboundReceiver};
use hpfriends_broker::protocol::frame::encode_publish;
use hpfriends_broker::protocol::{decode, Frame, Limits};
use hpfriends_broker::routing::{Subscriber, Switchboard, View};
use hpfriends_consensus::KeyEntry;
use hpfriends_graph::synthetic::{self, Shape};
use hpfriends_graph::{AuthKey, Command, Graph, LookupMap, ShareKind, SharingIndex, Target, UserId};
use tokio_util::sync::CancellationToken;

const SUBSCRIBERS: usize = 10;
const PAYLOAD: usize = 256;

struct Setup {
    switchboard: Switchboard,
    receivers: Vec<OutboundReceiver>,
    wire: Bytes,
    channel: String,
}

/// A switchboard whose publisher `pub-key` (owner `publisher`) reaches every one of
/// `readers` on `channel`, each subscribed once.
fn setup(graph: &Graph, publisher: &str, readers: &[UserId], channel: &str) -> Setup {
    let index = SharingIndex::build(graph);
    let owner = graph.user_id(publisher).unwrap();
    for r in readers {
        assert!(index.may_read(owner, *r, channel), "bench graph must allow delivery");
    }
    let key = AuthKey {
        ident: "pub-key".into(),
        secret: "s".into(),
        owner: publisher.into(),
        publish: vec![channel.into()],
        subscribe: vec![],
        resume: false,
    };
    let keys: LookupMap<String, Arc<KeyEntry>> =
        [("pub-key".into(), Arc::new(KeyEntry::new(&key, owner)))].into_iter().collect();
    let peers = Arc::new(Peers::new(16 * 1024));
    let switchboard = Switchboard::new(Arc::new(View { index, keys: Arc::new(keys), last_applied: None }), peers, None);
    let mut receivers = Vec::new();
    for (i, r) in readers.iter().enumerate() {
        let (out, rx) = outbound(usize::MAX / 2, CancellationToken::new());
        switchboard
            .subscribe(Bytes::copy_from_slice(channel.as_bytes()), Subscriber { conn: i as u64, owner: *r, out });
        receivers.push(rx);
    }
    let wire = encode_publish(b"pub-key", channel.as_bytes(), &[b'x'; PAYLOAD]);
    Setup { switchboard, receivers, wire, channel: channel.into() }
}

fn empty_graph() -> Setup {
    let mut g = Graph::new();
    let mut cmds = vec![Command::AddUser { name: "publisher".into() }];
    for i in 0..SUBSCRIBERS {
        let name = format!("reader{i}");
        let to = Target::User(name.clone());
        cmds.push(Command::AddUser { name });
        cmds.push(Command::AddShare {
            from: "publisher".into(),
            to: to.clone(),
            channel: "ch".into(),
            kind: ShareKind::Shares,
            with_history: false,
        });
        cmds.push(Command::AcceptShare { from: "publisher".into(), to, channel: "ch".into() });
    }
    g.apply(&Command::Batch { commands: cmds }).unwrap();
    let readers: Vec<UserId> = (0..SUBSCRIBERS).map(|i| g.user_id(&format!("reader{i}")).unwrap()).collect();
    setup(&g, "publisher", &readers, "ch")
}

fn large_graph() -> Setup {
    let g = synthetic::graph(&Shape::large());
    let index = SharingIndex::build(&g);
    // The busiest channel, and a publisher there with at least N readers.
    let channel = synthetic::channel_name(0);
    let (publisher, readers) = (0..Shape::large().users as u32)
        .find_map(|u| index.readers(u, &channel).filter(|r| r.len() >= SUBSCRIBERS).map(|r| (u, r.clone())))
        .expect("the generated graph has a publisher with enough readers");
    let name = g.user_name(publisher).unwrap().to_string();
    setup(&g, &name, &readers.ids()[..SUBSCRIBERS], &channel)
}

/// What a session does with one PUBLISH frame, plus the subscribers' writers
/// taking it off their queues.
fn route_one(s: &mut Setup, buf: &mut BytesMut) {
    buf.extend_from_slice(&s.wire);
    let Some(Frame::Publish(publish)) = decode(buf, &Limits::default()).unwrap() else {
        unreachable!("a PUBLISH was encoded")
    };
    let view = s.switchboard.view();
    let entry = view.keys.get(std::str::from_utf8(publish.ident()).unwrap()).unwrap();
    assert!(entry.may_publish(std::str::from_utf8(publish.channel()).unwrap()));
    let delivery = s.switchboard.publish(&view, entry.owner, &publish, &mut s.switchboard.offers());
    debug_assert_eq!(delivery.delivered, SUBSCRIBERS);
    for rx in &mut s.receivers {
        let frame = rx.rx.try_recv().unwrap();
        rx.written(frame.len());
    }
}

fn routing(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_publish");
    group.throughput(Throughput::Elements(1));
    let mut buf = BytesMut::with_capacity(4096);
    for (name, mut setup) in [("empty_graph", empty_graph()), ("large_graph_100k_users_1M_shares", large_graph())] {
        assert!(!setup.channel.is_empty());
        group.bench_function(BenchmarkId::new(name, format!("{SUBSCRIBERS}_subscribers")), |b| {
            b.iter(|| route_one(&mut setup, &mut buf))
        });
    }
    group.finish();
}

criterion_group!(benches, routing);
criterion_main!(benches);
