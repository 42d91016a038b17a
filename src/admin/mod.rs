//! The admin console (SPEC section 9): database `shardgate`, the `admin:` credentials, simple
//! queries only, answered by the proxy itself with PgBouncer's column names where PgBouncer
//! has the same column.
//!
//! Owns parsing the commands and rendering their results as text rows. It reads the proxy's
//! state through the `Proxy` handle; it changes nothing yet (RELOAD, PAUSE and RESUME say they
//! are not available).

mod show;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;

use crate::frontend::stream::ClientStream;
use crate::frontend::Proxy;
use crate::protocol::decode::{self, ClientMessage};
use crate::protocol::{build, frame, sqlstate, PgError};

/// The commands, as listed to a user who typed something else.
pub const COMMANDS: &str =
    "SHOW SHARDS, SHOW POOLS, SHOW CONFIG, SHOW BUCKETS, SHOW TRANSACTIONS, SHOW ROUTE <sql>";

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
                    Ok(Some(table)) => render(&mut out, &table),
                    Ok(None) => build::command_complete(&mut out, "SHOW"),
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
async fn run(proxy: &Proxy, cmd: &str) -> Result<Option<Table>, PgError> {
    let lower = cmd.to_ascii_lowercase();
    let words: Vec<&str> = lower.split_whitespace().collect();
    match words.as_slice() {
        ["show", "shards"] => Ok(Some(show::shards(proxy))),
        ["show", "pools"] => Ok(Some(show::pools(proxy))),
        ["show", "config"] => Ok(Some(show::config(proxy))),
        ["show", "buckets"] => Ok(Some(show::buckets(proxy))),
        ["show", "transactions"] => show::transactions(proxy).await.map(Some),
        ["show", "route", ..] => {
            // The statement as typed (its case matters for quoted names and literals).
            let at = lower
                .find("route")
                .map(|i| i + "route".len())
                .unwrap_or(cmd.len());
            Ok(Some(show::route(proxy, cmd[at..].trim())))
        }
        ["reload"] | ["pause"] | ["resume"] => Err(PgError::error(
            sqlstate::FEATURE_NOT_SUPPORTED,
            format!(
                "{} is not available in this version of shardgate",
                words[0].to_uppercase()
            ),
        )),
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
