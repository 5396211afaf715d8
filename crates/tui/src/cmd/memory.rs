//! `tether memory ...`: memory stores, their memories and versions, over the socket.

use std::io::Read;
use std::process::ExitCode;

use tether_proto::memory::{
    Access, Actor, DeleteMemory, ListMemories, ListMemoryStores, ListMemoryVersions, MemoryItem,
    MemoryRef, MemoryResourceParam, MemoryStoreParams, MemoryStoreSpec, RedactMemoryVersion,
    WriteMemory,
};
use tether_proto::method::rpc;

use super::{CmdResult, connect, usage};
use crate::cli::{MemoryAction, MemoryStoresAction};

/// `--memory STORE[:ro]` values as session resources.
pub fn resources(specs: &[String]) -> Vec<MemoryResourceParam> {
    specs
        .iter()
        .map(|s| match s.strip_suffix(":ro") {
            Some(store) => MemoryResourceParam::new(store, Access::ReadOnly),
            None => MemoryResourceParam::new(s.strip_suffix(":rw").unwrap_or(s), Access::ReadWrite),
        })
        .collect()
}

fn json_line<T: serde::Serialize>(v: &T) {
    println!("{}", serde_json::to_string(v).unwrap_or_default());
}

fn actor(a: &Option<Actor>) -> String {
    match a {
        Some(Actor::SessionActor { session_id }) => session_id.clone(),
        Some(Actor::ApiActor { api_key_id }) => format!("api:{api_key_id}"),
        Some(Actor::UserActor { user_id }) => format!("cli:{user_id}"),
        Some(Actor::ServiceAccountActor { service_account_id }) => service_account_id.clone(),
        None => "-".into(),
    }
}

pub async fn run(action: MemoryAction) -> CmdResult {
    match action {
        MemoryAction::Stores { action } => return stores(action).await,
        MemoryAction::Ls {
            store,
            prefix,
            json,
        } => {
            let page = connect()
                .await?
                .request::<rpc::MemoryList>(ListMemories {
                    store,
                    path_prefix: prefix,
                })
                .await?;
            if !json {
                println!("{:<40} {:>8} {:<12} ID", "PATH", "BYTES", "SHA256");
            }
            for item in &page.data {
                match (item, json) {
                    (_, true) => json_line(item),
                    (MemoryItem::Memory(m), false) => println!(
                        "{:<40} {:>8} {:<12} {}",
                        m.path,
                        m.content_size_bytes,
                        &m.content_sha256[..12.min(m.content_sha256.len())],
                        m.id
                    ),
                    (MemoryItem::Prefix(p), false) => println!("{}", p.path),
                }
            }
        }
        MemoryAction::Cat {
            store,
            memory,
            json,
        } => {
            let m = connect()
                .await?
                .request::<rpc::MemoryGet>(MemoryRef { store, memory })
                .await?;
            if json {
                json_line(&m);
            } else {
                print!("{}", m.content.unwrap_or_default());
            }
        }
        MemoryAction::Write {
            store,
            path,
            content,
            file,
            if_sha,
            json,
        } => {
            let content = match (content, file.as_deref()) {
                (Some(c), _) => c,
                (None, Some("-")) | (None, None) => {
                    let mut s = String::new();
                    std::io::stdin()
                        .read_to_string(&mut s)
                        .map_err(|e| usage(format!("cannot read the content from stdin: {e}")))?;
                    s
                }
                (None, Some(f)) => std::fs::read_to_string(f)
                    .map_err(|e| usage(format!("cannot read {f}: {e}")))?,
            };
            let expected_sha256 = if_sha.map(|s| if s == "none" { String::new() } else { s });
            let m = connect()
                .await?
                .request::<rpc::MemoryWrite>(WriteMemory {
                    store,
                    path,
                    content,
                    expected_sha256,
                })
                .await?;
            if json {
                json_line(&m);
            } else {
                println!(
                    "wrote {} ({} bytes, sha256 {}, version {})",
                    m.path, m.content_size_bytes, m.content_sha256, m.memory_version_id
                );
            }
        }
        MemoryAction::Rm {
            store,
            memory,
            if_sha,
        } => {
            let d = connect()
                .await?
                .request::<rpc::MemoryDelete>(DeleteMemory {
                    store,
                    memory,
                    expected_sha256: if_sha,
                })
                .await?;
            println!("deleted {}", d.id);
        }
        MemoryAction::Versions {
            store,
            memory,
            json,
        } => {
            let page = connect()
                .await?
                .request::<rpc::MemoryVersions>(ListMemoryVersions { store, memory })
                .await?;
            if !json {
                println!(
                    "{:<34} {:<9} {:<30} {:<24} PATH",
                    "VERSION", "OP", "BY", "AT"
                );
            }
            for v in &page.data {
                if json {
                    json_line(v);
                } else {
                    println!(
                        "{:<34} {:<9} {:<30} {:<24} {}",
                        v.id,
                        v.operation.as_str(),
                        actor(&v.created_by),
                        v.created_at,
                        v.path.as_deref().unwrap_or(if v.redacted_at.is_some() {
                            "(redacted)"
                        } else {
                            "-"
                        })
                    );
                }
            }
        }
        MemoryAction::Redact { store, version } => {
            let v = connect()
                .await?
                .request::<rpc::MemoryRedact>(RedactMemoryVersion { store, version })
                .await?;
            println!("redacted {}", v.id);
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn stores(action: MemoryStoresAction) -> CmdResult {
    let mut c = connect().await?;
    match action {
        MemoryStoresAction::Create {
            name,
            description,
            json,
        } => {
            let s = c
                .request::<rpc::MemoryStoreCreate>(MemoryStoreSpec {
                    name,
                    description,
                    ..Default::default()
                })
                .await?;
            if json {
                json_line(&s);
            } else {
                println!(
                    "created memory store {} ({}); mount it with --memory {}",
                    s.name, s.id, s.name
                );
            }
        }
        MemoryStoresAction::Ls { all, json } => {
            let page = c
                .request::<rpc::MemoryStoreList>(ListMemoryStores { all })
                .await?;
            if !json {
                println!("{:<24} {:<36} DESCRIPTION", "NAME", "ID");
            }
            for s in &page.data {
                if json {
                    json_line(s);
                } else {
                    println!(
                        "{:<24} {:<36} {}{}",
                        s.name,
                        s.id,
                        s.description,
                        if s.archived_at.is_some() {
                            "  (archived)"
                        } else {
                            ""
                        }
                    );
                }
            }
        }
        MemoryStoresAction::Show { store } => {
            let s = c
                .request::<rpc::MemoryStoreGet>(MemoryStoreParams { store })
                .await?;
            println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
        }
        MemoryStoresAction::Archive { store } => {
            let s = c
                .request::<rpc::MemoryStoreArchive>(MemoryStoreParams { store })
                .await?;
            println!("archived memory store {} ({})", s.name, s.id);
        }
        MemoryStoresAction::Delete { store } => {
            let d = c
                .request::<rpc::MemoryStoreDelete>(MemoryStoreParams { store })
                .await?;
            println!("deleted memory store {}", d.id);
        }
    }
    Ok(ExitCode::SUCCESS)
}
