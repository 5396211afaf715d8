//! `tether skills ...`: skills (the hosted Skills API), over the socket. A directory is sent
//! in one frame, each file under its path inside the directory (`my-skill/SKILL.md`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use base64::Engine as _;
use tether_proto::method::{NoParams, rpc};
use tether_proto::skill::{CreateSkill, CreateSkillVersion, SkillFile, SkillParams};

use super::{CmdResult, connect, usage};
use crate::cli::SkillsAction;

/// What one frame carries: the base64 of this much, with room for the envelope.
const MAX_SOCKET_SKILL: u64 = 10 * 1024 * 1024;

fn json_line<T: serde::Serialize>(v: &T) {
    println!("{}", serde_json::to_string(v).unwrap_or_default());
}

/// Every regular file under `dir` (symlinks are not followed), named `<dir name>/<path>`.
fn read_dir_files(dir: &Path) -> Result<Vec<SkillFile>, String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let top = dir
        .canonicalize()
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let name = top
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| format!("{} is not a directory with a name", dir.display()))?;
    let mut out = Vec::new();
    let mut total = 0u64;
    let mut stack: Vec<PathBuf> = vec![top.clone()];
    while let Some(d) = stack.pop() {
        let entries =
            std::fs::read_dir(&d).map_err(|e| format!("cannot read {}: {e}", d.display()))?;
        for entry in entries.flatten() {
            let path = entry.path();
            let kind = entry
                .file_type()
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() {
                let bytes = std::fs::read(&path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                total += bytes.len() as u64;
                if total > MAX_SOCKET_SKILL {
                    return Err(format!(
                        "{} holds more than {MAX_SOCKET_SKILL} bytes, the most `tether skills create` sends; upload it with POST /v1/skills",
                        dir.display()
                    ));
                }
                let rel = path.strip_prefix(&top).unwrap_or(&path);
                out.push(SkillFile {
                    path: format!("{name}/{}", rel.to_string_lossy()),
                    content_base64: b64.encode(&bytes),
                });
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

pub async fn run(action: SkillsAction) -> CmdResult {
    match action {
        SkillsAction::Create { dir, name, skill } => {
            let files = read_dir_files(&dir).map_err(usage)?;
            let mut client = connect().await?;
            match skill {
                Some(skill_id) => {
                    let v = client
                        .request::<rpc::SkillVersionCreate>(CreateSkillVersion { skill_id, files })
                        .await?;
                    println!("{} version {}", v.skill_id, v.id);
                }
                None => {
                    let s = client
                        .request::<rpc::SkillCreate>(CreateSkill {
                            display_name: name,
                            files,
                        })
                        .await?;
                    println!("{} version {}", s.id, s.latest_version_id);
                }
            }
        }
        SkillsAction::Ls { json } => {
            let list = connect()
                .await?
                .request::<rpc::SkillList>(NoParams {})
                .await?;
            if !json {
                println!("{:<34} {:<18} {:<25} NAME", "ID", "LATEST", "UPDATED");
            }
            for s in &list.data {
                if json {
                    json_line(s);
                } else {
                    println!(
                        "{:<34} {:<18} {:<25} {}",
                        s.id, s.latest_version_id, s.updated_at, s.display_name
                    );
                }
            }
        }
        SkillsAction::Show { skill, json } => {
            let d = connect()
                .await?
                .request::<rpc::SkillGet>(SkillParams { skill })
                .await?;
            if json {
                json_line(&d);
            } else {
                println!("id:           {}", d.skill.id);
                println!("display_name: {}", d.skill.display_name);
                if let Some(latest) = d.versions.first() {
                    println!("name:         {}", latest.name);
                    println!("description:  {}", latest.description);
                    println!(
                        "mounted at:   {}/{}/",
                        tether_proto::skill::MOUNT_ROOT,
                        latest.name
                    );
                }
                println!("versions (newest first):");
                for v in &d.versions {
                    println!("  {}  {}", v.id, v.created_at);
                }
                println!("files of {}:", d.skill.latest_version_id);
                for f in &d.files {
                    println!("  {f}");
                }
            }
        }
        SkillsAction::Rm { skill } => {
            let d = connect()
                .await?
                .request::<rpc::SkillDelete>(SkillParams { skill })
                .await?;
            println!("deleted {}", d.id);
        }
    }
    Ok(ExitCode::SUCCESS)
}
