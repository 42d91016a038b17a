//! The admin console (SPEC section 9): database `shardgate`, the `admin:` credentials, simple
//! queries only, answered by the proxy itself with PgBouncer's column names where PgBouncer
//! has the same column.
//!
//! Owns parsing the commands and rendering their results as text rows. It reads the proxy's
//! state through the `Proxy` handle; RELOAD re-reads the config file, PAUSE holds new
//! requests until every server connection is released (then closes the idle ones), RESUME
//! lets them go on.

mod show;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;

use crate::frontend::stream::ClientStream;
use crate::frontend::Proxy;
use crate::protocol::decode::{self, ClientMessage};
use crate::protocol::{build, frame, sqlstate, PgError};

/// The commands, as listed to a user who typed something else.
pub const COMMANDS: &str = "SHOW SHARDS, SHOW POOLS, SHOW CLIENTS, SHOW STATS, SHOW CONFIG, SHOW BUCKETS, SHOW TRANSACTIONS, SHOW ROUTE <sql>, RELOAD, PAUSE, RESUME";

/// What a command answers: a table, or just a command tag.
pub enum Answer {
    Table(Table),
    Tag(&'static str, Vec<String>),
}

/// A result set: column names and text rows.
pub struct Table {
    pub columns: Vec<&'static str>,
    pub rows: Vec<Vec<Option<String>>>,
}

/// Serve an authenticated admin client until it leaves.
pub async fn serve(proxy: Proxy, client: &mut ClientStream, mut rbuf: BytesMut) {
    let mut out = BytesMut::new();
    loop {
        let f = loop {
            match frame::next_tagged(&mut rbuf, 1 << 20) {
                Ok(Some(f)) => break f,
                Ok(None) => match client.read_buf(&mut rbuf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                },
                Err(e) => {
                    build::error(
                        &mut out,
                        &PgError::fatal(sqlstate::PROTOCOL_VIOLATION, e.to_string()),
                    );
                    let _ = client.write_all(&out).await;
                    return;
                }
            }
        };
        match decode::client(f.tag, f.body()) {
            Ok(ClientMessage::Terminate) => return,
            Ok(ClientMessage::Query(sql)) => {
                let sql = String::from_utf8_lossy(sql);
                match run(&proxy, sql.trim().trim_end_matches(';').trim()).await {
                    Ok(Answer::Table(table)) => render(&mut out, &table),
                    Ok(Answer::Tag(tag, notices)) => {
                        for n in notices {
                            build::notice(&mut out, "NOTICE", "00000", &n);
                        }
                        build::command_complete(&mut out, tag)
                    }
                    Err(e) => build::error(&mut out, &e),
                }
                build::ready_for_query(&mut out, b'I');
            }
            Ok(ClientMessage::Sync) => build::ready_for_query(&mut out, b'I'),
            Ok(ClientMessage::Flush) => {}
            Ok(_) => build::error(
                &mut out,
                &PgError::error(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    "the admin console accepts simple queries only",
                ),
            ),
            Err(e) => {
                build::error(
                    &mut out,
                    &PgError::fatal(sqlstate::PROTOCOL_VIOLATION, e.to_string()),
                );
                let _ = client.write_all(&out).await;
                return;
            }
        }
        if client.write_all(&out).await.is_err() {
            return;
        }
        out.clear();
    }
}

/// Run one command.
async fn run(proxy: &Proxy, cmd: &str) -> Result<Answer, PgError> {
    let lower = cmd.to_ascii_lowercase();
    let words: Vec<&str> = lower.split_whitespace().collect();
    let table = |t| Ok(Answer::Table(t));
    match words.as_slice() {
        ["show", "shards"] => table(show::shards(proxy)),
        ["show", "pools"] => table(show::pools(proxy)),
        ["show", "clients"] => table(show::clients(proxy)),
        ["show", "stats"] => table(show::stats(proxy)),
        ["show", "config"] => table(show::config(proxy)),
        ["show", "buckets"] => table(show::buckets(proxy).await),
        ["show", "transactions"] => show::transactions(proxy).await.map(Answer::Table),
        ["show", "route", ..] => {
            // The statement as typed (its case matters for quoted names and literals).
            let at = lower
                .find("route")
                .map(|i| i + "route".len())
                .unwrap_or(cmd.len());
            table(show::route(proxy, cmd[at..].trim()))
        }
        ["reload"] => match proxy.reload_from_file().await {
            Ok(r) => {
                let mut notes = Vec::new();
                if !r.shards_added.is_empty() {
                    notes.push(format!("shards added: {}", r.shards_added.join(", ")));
                }
                if !r.restart_needed.is_empty() {
                    notes.push(format!(
                        "changed but kept until a restart: {}",
                        r.restart_needed.join(", ")
                    ));
                }
                Ok(Answer::Tag("RELOAD", notes))
            }
            Err(e) => Err(PgError::error(
                "F0000",
                format!("config not reloaded, the running config stays: {e}"),
            )),
        },
        ["pause"] => {
            proxy.set_paused(true);
            // As PgBouncer: return once no server connection is in use, then close the idle ones.
            while proxy.pools().iter().any(|p| p.active_count() > 0) {
                if !proxy.is_paused() {
                    return Err(PgError::error(
                        "57014",
                        "PAUSE was undone by a RESUME before every server connection was released",
                    ));
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            for p in proxy.pools() {
                p.drain_idle();
            }
            Ok(Answer::Tag("PAUSE", Vec::new()))
        }
        ["resume"] => {
            if !proxy.is_paused() {
                return Err(PgError::error("55000", "shardgate is not paused"));
            }
            proxy.set_paused(false);
            Ok(Answer::Tag("RESUME", Vec::new()))
        }
        _ => Err(
            PgError::error("42601", format!("unknown admin command \"{cmd}\""))
                .with_hint(format!("The admin console knows: {COMMANDS}.")),
        ),
    }
}

fn render(out: &mut BytesMut, t: &Table) {
    let fields: Vec<crate::merge::rows::FieldDescription> = t
        .columns
        .iter()
        .map(|c| crate::merge::rows::FieldDescription {
            name: c.as_bytes().to_vec(),
            table_oid: 0,
            column_attr: 0,
            type_oid: 25,
            type_len: -1,
            type_modifier: -1,
            format: 0,
        })
        .collect();
    // Frames built from our own bounded values cannot be too large.
    let _ = crate::merge::rows::write_row_description(out, &fields);
    for row in &t.rows {
        let _ = crate::merge::rows::write_data_row(
            out,
            row.iter().map(|v| v.as_deref().map(str::as_bytes)),
        );
    }
    build::command_complete(out, &format!("SHOW {}", t.rows.len()));
}
