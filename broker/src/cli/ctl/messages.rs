//! `ctl messages`: the archive of a channel, printed as it comes.

use std::time::{Duration, SystemTime};

use super::client::{enc, Api};
use super::MessagesArgs;
use crate::app::messages::MAX_LIMIT;
use crate::app::types::ArchivedMessage;

/// Follows the pages until `--limit` messages or the newest one. Each
/// message is a line: time, ident, payload (text, or `base64:` and the bytes).
pub async fn print(api: &Api, args: &MessagesArgs, json: bool) -> anyhow::Result<()> {
    let mut query = format!("channel={}", enc(&args.channel));
    for (key, value) in [("since", &args.since), ("until", &args.until)] {
        if let Some(v) = value {
            query.push_str(&format!("&{key}={}", enc(&instant(v))));
        }
    }
    if let Some(p) = &args.publisher {
        query.push_str(&format!("&publisher={}", enc(p)));
    }
    if args.follow {
        return api.follow_lines(&format!("/api/v1/messages?{query}&follow=true"), |line| print_line(line, json)).await;
    }
    let mut path = format!("/api/v1/messages?{query}&limit={}", args.limit.clamp(1, MAX_LIMIT));
    let mut printed = 0;
    loop {
        let (lines, next) = api.get_lines(&path).await?;
        for line in lines.lines().filter(|l| !l.is_empty()) {
            if printed == args.limit {
                return Ok(());
            }
            print_line(line, json)?;
            printed += 1;
        }
        match next {
            Some(p) if printed < args.limit => path = p,
            _ => return Ok(()),
        }
    }
}

/// One message: the API's line, or time, ident and payload for people.
fn print_line(line: &str, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{line}");
        return Ok(());
    }
    let m: ArchivedMessage = serde_json::from_str(line)?;
    match &m.payload {
        Some(text) => println!("{}  {}  {text}", m.time, m.ident),
        None => println!("{}  {}  base64:{}", m.time, m.ident, m.payload_b64),
    }
    Ok(())
}

/// An age (`15m`, `1h`, `2d`) becomes the time that long ago; anything else
/// goes to the API as written.
fn instant(text: &str) -> String {
    match humantime::parse_duration(text.trim()) {
        Ok(age) => {
            let at = SystemTime::now().checked_sub(age).unwrap_or(SystemTime::UNIX_EPOCH);
            humantime::format_rfc3339_micros(at.max(SystemTime::UNIX_EPOCH + Duration::ZERO)).to_string()
        }
        Err(_) => text.to_string(),
    }
}
