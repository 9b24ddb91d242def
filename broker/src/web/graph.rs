//! Graph: a picture of my part of the sharing graph, drawn by the server as
//! SVG in four columns: who shares into me (and my groups), me and my groups,
//! whom I share with, and who reads my data through their relays.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use hpfriends_graph::{explain_all, Graph, ShareKind, Target};
use maud::{html, Markup};

use super::layout::{page, render};
use super::session::SignedInUser;
use crate::state::AppState;

const COLUMN_X: [u32; 4] = [20, 280, 540, 800];
const NODE_W: u32 = 200;
const ROW_H: u32 = 34;
const TOP: u32 = 40;
const COLUMN_TITLES: [&str; 4] = ["Shares into me", "Me and my groups", "I share with", "Reached through relays"];

struct Edge {
    from: (usize, usize),
    to: (usize, usize),
    label: String,
    accepted: bool,
}

/// Nodes by column, and edges between (column, row) places.
#[derive(Default)]
struct Picture {
    columns: [Vec<String>; 4],
    edges: Vec<Edge>,
}

impl Picture {
    fn place(&mut self, column: usize, name: &str) -> (usize, usize) {
        let col = &mut self.columns[column];
        let row = col.iter().position(|n| n == name).unwrap_or_else(|| {
            col.push(name.to_string());
            col.len() - 1
        });
        (column, row)
    }

    fn edge(&mut self, from: (usize, usize), to: (usize, usize), label: String, accepted: bool) {
        self.edges.push(Edge { from, to, label, accepted });
    }
}

fn label(channel: &str, kind: ShareKind) -> String {
    format!("{channel} ({})", kind.as_str())
}

/// Past this many shares the whole picture is unreadable: one channel at a time.
const MAX_EDGES: usize = 300;

/// Channels my shares in and out are on, with how many there are.
fn my_channels(g: &Graph, me: &str) -> Vec<(String, usize)> {
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for s in g.shares_of(me) {
        *count.entry(s.channel).or_default() += 1;
    }
    count.into_iter().collect()
}

fn picture(g: &Graph, me: &str, only: Option<&str>) -> Picture {
    let wanted = |channel: &str| only.is_none_or(|o| o == channel);
    let mut p = Picture::default();
    let me_at = p.place(1, me);
    // Shares into me and into the groups I joined.
    let mut targets = vec![(Target::User(me.to_string()), me_at)];
    for group in g.groups_of(me) {
        let at = p.place(1, &format!("group:{group}"));
        p.edge(at, me_at, "member".into(), true);
        targets.push((Target::Group(group.to_string()), at));
    }
    for (to, at) in &targets {
        for (channel, from) in g.shares_into(to).filter(|(c, _)| wanted(c)) {
            if let Some(share) = g.share(from, to, channel) {
                let sender = p.place(0, from);
                p.edge(sender, *at, label(channel, share.kind), share.accepted);
            }
        }
    }
    // My shares, and the readers my data reaches beyond them.
    let mut channels: BTreeMap<&str, ()> = BTreeMap::new();
    for channel in g.channels().filter(|c| wanted(c)) {
        for (to, share) in g.out_shares(me, channel).into_iter().flatten() {
            let target = p.place(2, &to.to_string());
            p.edge(me_at, target, label(channel, share.kind), share.accepted);
            channels.insert(channel, ());
        }
    }
    for channel in channels.keys() {
        for (reader, hops) in explain_all(g, me, channel) {
            let Some(last) = hops.last().filter(|_| hops.len() > 1) else { continue };
            let via = p.columns[2].iter().position(|n| *n == last.from).map(|row| (2, row));
            let from = via.unwrap_or_else(|| p.place(3, &last.from));
            let to = p.place(3, &reader);
            p.edge(from, to, label(channel, last.kind), true);
        }
    }
    p
}

fn centre(place: (usize, usize)) -> (u32, u32) {
    (COLUMN_X[place.0] + NODE_W / 2, TOP + place.1 as u32 * ROW_H + ROW_H / 2)
}

fn svg(p: &Picture) -> Markup {
    let rows = p.columns.iter().map(Vec::len).max().unwrap_or(1).max(1) as u32;
    let height = TOP + rows * ROW_H + 20;
    let width = COLUMN_X[3] + NODE_W + 20;
    html! {
        svg.graph xmlns="http://www.w3.org/2000/svg" viewBox=(format!("0 0 {width} {height}")) width=(width) height=(height)
            role="img" aria-labelledby="graph-title" {
            title #graph-title { "My part of the sharing graph" }
            @for (i, t) in COLUMN_TITLES.iter().enumerate() {
                text.column x=(COLUMN_X[i]) y="20" { (t) }
            }
            @for e in &p.edges {
                @let (x1, y1) = centre(e.from);
                @let (x2, y2) = centre(e.to);
                @let (x1, x2) = if x1 < x2 { (x1 + NODE_W / 2, x2 - NODE_W / 2) } else if x1 > x2 { (x1 - NODE_W / 2, x2 + NODE_W / 2) } else { (x1, x2) };
                line.edge.pending[!e.accepted] x1=(x1) y1=(y1) x2=(x2) y2=(y2) {
                    title { (e.label) @if !e.accepted { " (pending)" } }
                }
            }
            @for (c, column) in p.columns.iter().enumerate() {
                @for (r, name) in column.iter().enumerate() {
                    @let y = TOP + r as u32 * ROW_H + 4;
                    g.node.group[name.starts_with("group:")].me[c == 1 && r == 0] {
                        rect x=(COLUMN_X[c]) y=(y) width=(NODE_W) height=(ROW_H - 8) rx="5" {}
                        text x=(COLUMN_X[c] + 8) y=(y + 18) { (name) }
                    }
                }
            }
        }
    }
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub struct GraphQuery {
    channel: String,
}

pub async fn show(State(state): State<AppState>, u: SignedInUser, Query(q): Query<GraphQuery>) -> Response {
    let SignedInUser(signed, me) = &u;
    let (channels, total, only, p) = state.node.read_graph(|g| {
        let channels = my_channels(g, me);
        let total: usize = channels.iter().map(|(_, n)| n).sum();
        let only = match q.channel.trim() {
            "" if total <= MAX_EDGES => None,
            "" => channels.first().map(|(c, _)| c.clone()),
            c => Some(c.to_string()),
        };
        let p = picture(g, me, only.as_deref());
        (channels, total, only, p)
    });
    let body = html! {
        p.lead { "Lines are shares (hover for channel and kind; dashed ones are not accepted yet). The same as a list: "
            a href="/shares" { "Shares" } ", " a href="/shared-with-you" { "Shared with you" } ", " a href="/audience" { "Audience" } "." }
        @if channels.len() > 1 {
            form.row method="get" action="/graph" {
                div.field {
                    label for="f-channel" { "Channel" }
                    select #f-channel name="channel" {
                        @if total <= MAX_EDGES { option value="" selected[only.is_none()] { "all channels" } }
                        @for (c, n) in &channels {
                            option value=(c) selected[only.as_deref() == Some(c.as_str())] { (c) " (" (n) ")" }
                        }
                    }
                }
                button type="submit" { "Draw" }
            }
            @if only.is_some() && q.channel.trim().is_empty() {
                p.hint { "You have more than " (MAX_EDGES) " shares: one channel at a time." }
            }
        }
        div.graph-frame { (svg(&p)) }
    };
    render(StatusCode::OK, page("Graph", Some(signed), "/graph", body))
}
