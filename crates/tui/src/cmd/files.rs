//! `tether files ...`: uploaded files (the hosted Files API), over the socket. Uploads go in
//! one frame (at most `file::MAX_SOCKET_UPLOAD`), downloads slice by slice.

use std::io::Write;
use std::process::ExitCode;

use base64::Engine as _;
use tether_proto::file::{FileMetadata, FileParams, MAX_SOCKET_UPLOAD, ReadFile, UploadFile};
use tether_proto::method::{NoParams, rpc};

use super::{CmdResult, connect, usage};
use crate::cli::FilesAction;

fn json_line<T: serde::Serialize>(v: &T) {
    println!("{}", serde_json::to_string(v).unwrap_or_default());
}

fn show(f: &FileMetadata) {
    println!("id:         {}", f.id);
    println!("filename:   {}", f.filename);
    println!("mime_type:  {}", f.mime_type);
    println!("size_bytes: {}", f.size_bytes);
    println!("sha256:     {}", f.sha256);
    println!("created_at: {}", f.created_at);
    if let Some(scope) = &f.scope {
        println!(
            "session:    {} (an output it left in /mnt/session/outputs)",
            scope.id
        );
    }
}

pub async fn run(action: FilesAction) -> CmdResult {
    let b64 = base64::engine::general_purpose::STANDARD;
    match action {
        FilesAction::Upload {
            path,
            name,
            mime_type,
            json,
        } => {
            let bytes = std::fs::read(&path)
                .map_err(|e| usage(format!("cannot read {}: {e}", path.display())))?;
            if bytes.len() > MAX_SOCKET_UPLOAD {
                return Err(usage(format!(
                    "{} is {} bytes; `tether files upload` takes up to {MAX_SOCKET_UPLOAD}. Upload larger files with POST /v1/files (e.g. curl -F file=@{} -H \"x-api-key: $(tether http-token)\" http://HOST:PORT/v1/files)",
                    path.display(),
                    bytes.len(),
                    path.display()
                )));
            }
            let filename = name.unwrap_or_else(|| {
                path.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            });
            let f = connect()
                .await?
                .request::<rpc::FileUpload>(UploadFile {
                    filename,
                    mime_type,
                    content_base64: b64.encode(&bytes),
                })
                .await?;
            if json {
                json_line(&f);
            } else {
                println!("{}", f.id);
            }
        }
        FilesAction::Ls { session, json } => {
            let mut client = connect().await?;
            let mut list = client.request::<rpc::FileList>(NoParams {}).await?;
            if let Some(session) = session {
                // A name or a prefix becomes the session's id.
                let id = client
                    .request::<rpc::SessionGet>(tether_proto::method::SessionParams { session })
                    .await?
                    .id;
                list.data
                    .retain(|f| f.scope.as_ref().is_some_and(|s| s.id == id));
            }
            if !json {
                println!(
                    "{:<32} {:>10} {:<24} {:<25} FILENAME",
                    "ID", "BYTES", "MIME", "CREATED"
                );
            }
            for f in &list.data {
                if json {
                    json_line(f);
                } else {
                    println!(
                        "{:<32} {:>10} {:<24} {:<25} {}",
                        f.id, f.size_bytes, f.mime_type, f.created_at, f.filename
                    );
                }
            }
        }
        FilesAction::Show { file, json } => {
            let f = connect()
                .await?
                .request::<rpc::FileGet>(FileParams { file_id: file })
                .await?;
            if json {
                json_line(&f);
            } else {
                show(&f);
            }
        }
        FilesAction::Download { file, output } => {
            let mut client = connect().await?;
            let meta = client
                .request::<rpc::FileGet>(FileParams {
                    file_id: file.clone(),
                })
                .await?;
            let target = output.unwrap_or_else(|| meta.filename.clone().into());
            let mut out: Box<dyn Write> = if target.as_os_str() == "-" {
                Box::new(std::io::stdout().lock())
            } else {
                Box::new(
                    std::fs::File::create(&target)
                        .map_err(|e| usage(format!("cannot create {}: {e}", target.display())))?,
                )
            };
            let mut offset = 0u64;
            loop {
                let chunk = client
                    .request::<rpc::FileRead>(ReadFile {
                        file_id: file.clone(),
                        offset,
                        length: MAX_SOCKET_UPLOAD as u64,
                    })
                    .await?;
                let bytes = b64.decode(chunk.content_base64.as_bytes()).map_err(|e| {
                    usage(format!("the daemon sent a chunk that is not base64: {e}"))
                })?;
                out.write_all(&bytes)
                    .map_err(|e| usage(format!("cannot write {}: {e}", target.display())))?;
                offset += bytes.len() as u64;
                if chunk.eof || bytes.is_empty() {
                    break;
                }
            }
            out.flush()
                .map_err(|e| usage(format!("cannot write {}: {e}", target.display())))?;
            if target.as_os_str() != "-" {
                eprintln!("wrote {} bytes to {}", offset, target.display());
            }
        }
        FilesAction::Rm { file } => {
            let d = connect()
                .await?
                .request::<rpc::FileDelete>(FileParams { file_id: file })
                .await?;
            println!("deleted {}", d.id);
        }
    }
    Ok(ExitCode::SUCCESS)
}
