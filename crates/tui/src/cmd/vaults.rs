//! `tether vaults ...`: vaults and their credentials over the socket. Secrets come from
//! stdin (hidden on a terminal), never from arguments (which `ps` and shell history show).

use tether_proto::method::rpc;
use tether_proto::vault::{
    AuthChanges, AuthParams, ClientCredentialsLogin, CreateCredential, Credential, CredentialAuth,
    CredentialChanges, CredentialNetworking, CredentialParams, CredentialSpec, ListCredentials,
    ListVaults, LoginStart, LoginStatus, LoginWait, Secret, UpdateCredential, VaultParams,
    VaultSpec,
};

use super::{CmdResult, connect, usage};
use crate::cli::VaultsAction;
use crate::client::ClientError;

fn json_line<T: serde::Serialize>(v: &T) {
    println!("{}", serde_json::to_string(v).unwrap_or_default());
}

/// One line from the terminal with echo off, or all of stdin when it is not a terminal.
fn read_secret(what: &str) -> Result<Secret, ClientError> {
    let line = super::read_hidden(what)?;
    // A trailing newline from `echo` or a file is not part of the secret.
    let secret = line.trim_end_matches(['\n', '\r']).to_string();
    if secret.is_empty() {
        return Err(usage(format!("no {what} given on stdin: nothing stored")));
    }
    Ok(Secret(secret))
}

fn describe(auth: &CredentialAuth) -> String {
    match auth {
        CredentialAuth::StaticBearer { mcp_server_url } => format!("bearer for {mcp_server_url}"),
        CredentialAuth::McpOauth { mcp_server_url, .. } => format!("oauth for {mcp_server_url}"),
        CredentialAuth::EnvironmentVariable {
            secret_name,
            networking,
            ..
        } => match networking {
            CredentialNetworking::Unrestricted => format!("${secret_name}"),
            CredentialNetworking::Limited { allowed_hosts } => {
                format!("${secret_name} for {}", allowed_hosts.join(", "))
            }
        },
    }
}

fn row(c: &Credential) {
    println!(
        "{:<32} {:<20} {}{}",
        c.id,
        c.display_name.as_deref().unwrap_or("-"),
        describe(&c.auth),
        if c.archived_at.is_some() {
            " (archived)"
        } else {
            ""
        }
    );
}

pub async fn run(action: VaultsAction) -> CmdResult {
    match action {
        VaultsAction::Create { name } => {
            let v = connect()
                .await?
                .request::<rpc::VaultCreate>(VaultSpec {
                    display_name: name,
                    ..Default::default()
                })
                .await?;
            println!("{}", v.id);
        }
        VaultsAction::Ls { all, json } => {
            let list = connect()
                .await?
                .request::<rpc::VaultList>(ListVaults { all })
                .await?;
            if !json {
                println!("{:<32} {:<24} CREATED", "ID", "NAME");
            }
            for v in &list.data {
                if json {
                    json_line(v);
                } else {
                    println!(
                        "{:<32} {:<24} {}{}",
                        v.id,
                        v.display_name,
                        v.created_at,
                        if v.archived_at.is_some() {
                            " (archived)"
                        } else {
                            ""
                        }
                    );
                }
            }
        }
        VaultsAction::Show { vault, all, json } => {
            let list = connect()
                .await?
                .request::<rpc::CredentialList>(ListCredentials { vault, all })
                .await?;
            if !json {
                println!("{:<32} {:<20} USE", "ID", "NAME");
            }
            for c in &list.data {
                if json {
                    json_line(c);
                } else {
                    row(c);
                }
            }
        }
        VaultsAction::Add {
            vault,
            mcp_url,
            env: _,
            hosts: _,
            name,
            client_id: Some(client_id),
            private_key,
            scope,
        } => {
            let mcp_server_url =
                mcp_url.ok_or_else(|| usage("--client-id needs --mcp-url URL".into()))?;
            let (client_secret, private_key) = match private_key {
                Some(path) => {
                    let pem = std::fs::read_to_string(&path).map_err(|e| {
                        usage(format!(
                            "cannot read the private key {}: {e}",
                            path.display()
                        ))
                    })?;
                    (None, Some(Secret(pem)))
                }
                None => (
                    Some(read_secret(&format!("client secret of {client_id}"))?),
                    None,
                ),
            };
            let c = connect()
                .await?
                .request::<rpc::CredentialClientCredentials>(ClientCredentialsLogin {
                    vault,
                    mcp_server_url,
                    client_id,
                    client_secret,
                    private_key,
                    scope,
                    display_name: name,
                })
                .await?;
            println!("{}", c.id);
        }
        VaultsAction::Add {
            vault,
            mcp_url,
            env,
            hosts,
            name,
            ..
        } => {
            let auth = match (mcp_url, env) {
                (Some(url), _) => AuthParams::StaticBearer {
                    token: read_secret(&format!("bearer token for {url}"))?,
                    mcp_server_url: url,
                },
                (None, Some(var)) => AuthParams::EnvironmentVariable {
                    secret_value: read_secret(&format!("value of ${var}"))?,
                    secret_name: var,
                    networking: if hosts.is_empty() {
                        CredentialNetworking::Unrestricted
                    } else {
                        CredentialNetworking::Limited {
                            allowed_hosts: hosts,
                        }
                    },
                    injection_location: None,
                },
                (None, None) => return Err(usage("give --mcp-url URL or --env NAME".into())),
            };
            let c = connect()
                .await?
                .request::<rpc::CredentialCreate>(CreateCredential {
                    vault,
                    credential: CredentialSpec {
                        auth,
                        display_name: name,
                        metadata: Default::default(),
                    },
                })
                .await?;
            println!("{}", c.id);
        }
        VaultsAction::Login { vault, mcp_url } => {
            let mut client = connect().await?;
            let started = client
                .request::<rpc::CredentialLogin>(LoginStart {
                    vault,
                    mcp_server_url: mcp_url.clone(),
                })
                .await?;
            eprintln!(
                "Open this URL in a browser on this machine to authorize tether for {mcp_url}:\n"
            );
            println!("{}", started.authorization_url);
            eprintln!(
                "\nWaiting for the browser to come back to {} ...",
                started.redirect_uri
            );
            loop {
                let status = client
                    .request::<rpc::CredentialLoginWait>(LoginWait {
                        login_id: started.login_id.clone(),
                        wait_secs: Some(60),
                    })
                    .await?;
                match status {
                    LoginStatus::Pending => continue,
                    LoginStatus::Done { credential } => {
                        eprintln!(
                            "Logged in: credential {} in vault {}",
                            credential.id, credential.vault_id
                        );
                        println!("{}", credential.id);
                        break;
                    }
                    LoginStatus::Failed { message } => {
                        return Err(usage(format!("the login failed: {message}")));
                    }
                }
            }
        }
        VaultsAction::Set { vault, credential } => {
            let mut client = connect().await?;
            let list = client
                .request::<rpc::CredentialList>(ListCredentials {
                    vault: vault.clone(),
                    all: false,
                })
                .await?;
            let Some(current) = list.data.iter().find(|c| c.id == credential) else {
                return Err(usage(format!(
                    "no live credential `{credential}` in vault `{vault}`; `tether vaults show {vault}` lists them"
                )));
            };
            let auth = match &current.auth {
                CredentialAuth::StaticBearer { .. } => AuthChanges::StaticBearer {
                    token: Some(read_secret("new bearer token")?),
                },
                CredentialAuth::McpOauth { .. } => AuthChanges::McpOauth {
                    access_token: Some(read_secret("new access token")?),
                    expires_at: None,
                    refresh: None,
                },
                CredentialAuth::EnvironmentVariable { secret_name, .. } => {
                    AuthChanges::EnvironmentVariable {
                        secret_value: Some(read_secret(&format!("new value of ${secret_name}"))?),
                        networking: None,
                        injection_location: None,
                    }
                }
            };
            let c = client
                .request::<rpc::CredentialUpdate>(UpdateCredential {
                    vault,
                    credential,
                    changes: CredentialChanges {
                        auth: Some(auth),
                        ..Default::default()
                    },
                })
                .await?;
            println!("{}", c.id);
        }
        VaultsAction::Archive { vault, credential } => {
            let mut client = connect().await?;
            match credential {
                Some(credential) => {
                    let c = client
                        .request::<rpc::CredentialArchive>(CredentialParams { vault, credential })
                        .await?;
                    println!("{} archived", c.id);
                }
                None => {
                    let v = client
                        .request::<rpc::VaultArchive>(VaultParams { vault })
                        .await?;
                    println!("{} archived", v.id);
                }
            }
        }
        VaultsAction::Rm { vault, credential } => {
            let mut client = connect().await?;
            let d = match credential {
                Some(credential) => {
                    client
                        .request::<rpc::CredentialDelete>(CredentialParams { vault, credential })
                        .await?
                }
                None => {
                    client
                        .request::<rpc::VaultDelete>(VaultParams { vault })
                        .await?
                }
            };
            println!("{} deleted", d.id);
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}
