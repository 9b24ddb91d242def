//! Tests against real `hpfriends` processes, one binary for all of them
//! (see ARCHITECTURE.md, "Tests").

mod archive;
mod compose;
mod docs;
mod fanout;
mod filters;
mod history;
mod layering;
mod nemesis;
mod one_build;
mod openapi;
mod operate;
mod raft;
mod resume;
mod scale;
mod security;
mod settings;
mod storage;
mod web;
