//! Signing in: `authenticate` and `resume` (one sign-in, then the rooms and the inbox
//! replayed for a resume).

use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;

use super::{Conn, Credentials};
use crate::auth::now_secs;
use crate::bus::{Position, Target};
use crate::gateway::handle::{CloseCause, Outbound, Stream, StreamPosition};
use crate::gateway::membership::Key;
use crate::gateway::presence::{fold_replay, MAX_NAMES};
use crate::gateway::resume_token::ResumeTokenError;
use crate::gateway::state::Gateway;
use crate::protocol::{AuthFailReason, ErrorCode, FrameKind, Resume, ServerFrame, StreamResume};

impl Conn {
    pub(super) async fn authenticate(&mut self, token: &str) -> Result<(), CloseCause> {
        let Some(user) = self.sign_in(Credentials::Jwt(token)).await? else {
            return Ok(());
        };
        let inbox = self.gw.bus.position(&Target::User(user.to_string())).await;
        let resume_token = self.resume_token();
        self.reply(&ServerFrame::Authenticated {
            user_id: &user,
            resume_token: resume_token.as_deref(),
            inbox: inbox.as_ref().ok(),
        })
        .await
    }

    /// What `authenticate` and `resume` share: a second sign-in is refused (`Ok(None)`), a
    /// user the credentials do not prove gets `auth_failed` and the close, and a proven one is
    /// indexed under the connection.
    pub(super) async fn sign_in(
        &mut self,
        credentials: Credentials<'_>,
    ) -> Result<Option<Arc<str>>, CloseCause> {
        if self.user.is_some() {
            self.error(
                ErrorCode::AlreadyAuthenticated,
                "this connection is already authenticated",
            )
            .await?;
            return Ok(None);
        }
        let Some(user) = identify(&self.gw, &self.id, credentials).await else {
            return self.auth_failed(AuthFailReason::InvalidToken).await;
        };
        let user: Arc<str> = Arc::from(user);
        self.register_user(&user).await?;
        Ok(Some(user))
    }

    /// Answers `auth_failed` and ends the connection (always `Err`).
    pub(super) async fn auth_failed<T>(&mut self, reason: AuthFailReason) -> Result<T, CloseCause> {
        self.reply(&ServerFrame::AuthFailed { reason }).await?;
        Err(CloseCause::of_auth_failure(reason))
    }

    /// Indexes the connection under its user and starts the user's direct frames here.
    pub(super) async fn register_user(&mut self, user: &Arc<str>) -> Result<(), CloseCause> {
        let gw = Arc::clone(&self.gw);
        let membership = gw.membership.lock(Key::User(user)).await;
        if !gw
            .registry
            .add_user(user, &self.handle, gw.cfg.connections_per_user)
        {
            drop(membership);
            return self.auth_failed(AuthFailReason::TooManyConnections).await;
        }
        if gw.registry.user_connections(user) == 1 {
            // A subscription asked for while the bus is reconnecting is made once it is back.
            if let Err(e) = gw.bus.subscribe_user(user).await {
                tracing::warn!(error = %e, "subscribe_user failed");
            }
        }
        drop(membership);
        gw.metrics.authenticated_connections.inc();
        self.user = Some(Arc::clone(user));
        Ok(())
    }

    /// `resume`: authenticate (resume token or JWT), rejoin the rooms, replay what was missed
    /// in each room and in the user's inbox, then answer `resumed`.
    pub(super) async fn resume(&mut self, r: Resume) -> Result<(), CloseCause> {
        let credentials = Credentials::Resume {
            resume_token: &r.resume_token,
            jwt: r.token.as_deref(),
        };
        let Some(user) = self.sign_in(credentials).await? else {
            return Ok(());
        };
        let mut rooms = std::collections::BTreeMap::new();
        for (game_id, since) in &r.rooms {
            let outcome = self.rejoin(game_id, since.as_ref()).await?;
            rooms.insert(game_id.as_str(), outcome);
        }
        let inbox = self
            .replay(Target::User(user.to_string()), r.inbox.as_ref())
            .await?;
        let token = self.resume_token().unwrap_or_default();
        self.reply(&ServerFrame::Resumed {
            user_id: &user,
            resume_token: &token,
            rooms,
            inbox,
        })
        .await
    }

    /// Rejoins one room during a resume and replays its missed events.
    pub(super) async fn rejoin(
        &mut self,
        game_id: &str,
        since: Option<&Position>,
    ) -> Result<StreamResume, CloseCause> {
        let (players, already) = match self.enter_room(game_id).await {
            Ok(joined) => joined,
            Err(code) => {
                return Ok(StreamResume {
                    recovered: false,
                    replayed: 0,
                    position: None,
                    players: None,
                    error: Some(code),
                })
            }
        };
        if !already {
            self.joined(game_id, players).await;
        }
        let mut outcome = self.replay(Target::Room(game_id.to_owned()), since).await?;
        outcome.players = Some(players);
        Ok(outcome)
    }

    /// Writes what `stream` received after `since` and arms the duplicate check for it.
    /// Called after the live path (room or user subscription) is in place, so nothing falls
    /// between the replay and live frames; the overlap is dropped by the check.
    pub(super) async fn replay(
        &mut self,
        stream: Target,
        since: Option<&Position>,
    ) -> Result<StreamResume, CloseCause> {
        let key = match &stream {
            Target::Room(g) => Stream::Room(g.clone()),
            Target::User(u) => Stream::Inbox(u.clone()),
            // Broadcasts have no history; callers only pass rooms and users.
            Target::All => Stream::Inbox(String::new()),
        };
        let recovery = match self.gw.bus.history(&stream, since).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "reading history failed");
                return Ok(StreamResume {
                    recovered: false,
                    replayed: 0,
                    position: None,
                    players: None,
                    error: Some(ErrorCode::EngineUnavailable),
                });
            }
        };
        let frames = match &key {
            // Joins and leaves are replayed the way live members get them.
            Stream::Room(game_id) if !self.gw.cfg.presence_interval.is_zero() => {
                fold_replay(game_id, recovery.frames, MAX_NAMES)
            }
            _ => recovery.frames,
        };
        let replayed = frames.len();
        for frame in frames {
            let out = Outbound::Frame {
                kind: FrameKind::of_frame(&frame),
                text: Utf8Bytes::from(frame.to_string()),
                emitted_at_ms: 0,
                // Written directly, never checked against the replay itself.
                position: None,
            };
            self.write(out, None).await?;
        }
        self.recovering.retain(|p| p.stream != key);
        self.recovering.push(StreamPosition {
            stream: key,
            offset: recovery.position.offset,
        });
        self.gw
            .metrics
            .resumed_streams
            .with_label_values(&[if recovery.recovered {
                "recovered"
            } else {
                "not_recovered"
            }])
            .inc();
        Ok(StreamResume {
            recovered: recovery.recovered,
            replayed,
            position: Some(recovery.position),
            players: None,
            error: None,
        })
    }

    /// A fresh resume token for this connection's user (none before authentication).
    pub(super) fn resume_token(&self) -> Option<String> {
        resume_token(&self.gw, self.user.as_deref())
    }
}

/// The user the credentials prove, if any. For `resume`: the resume token's user, else
/// the JWT's; both valid but naming different users proves nobody.
async fn identify(gw: &Gateway, connection: &str, credentials: Credentials<'_>) -> Option<String> {
    let now = now_secs();
    let (resume_token, jwt) = match credentials {
        Credentials::Jwt(token) => {
            return match gw.auth.verify(token, now) {
                Ok(user) => Some(user),
                Err(e) => {
                    tracing::debug!(connection = %connection, reason = %e, "authentication failed");
                    None
                }
            };
        }
        Credentials::Resume { resume_token, jwt } => (resume_token, jwt),
    };
    let by_resume = match use_resume_token(gw, resume_token, now).await {
        Ok(u) => Some(u),
        Err(e) => {
            if !resume_token.is_empty() {
                tracing::debug!(connection = %connection, reason = %e, "resume token refused");
            }
            None
        }
    };
    let by_jwt = jwt
        .filter(|t| !t.is_empty())
        .and_then(|t| gw.auth.verify(t, now).ok());
    match (by_resume, by_jwt) {
        (Some(a), Some(b)) if a != b => None,
        (Some(a), _) => Some(a),
        (None, b) => b,
    }
}

/// The user of a genuine, unexpired resume token that no gateway has seen used; using it
/// here spends it. When the record of uses cannot be reached the token is refused (a JWT in
/// the same `resume` still works).
async fn use_resume_token(gw: &Gateway, token: &str, now: u64) -> Result<String, ResumeTokenError> {
    let claim = gw.auth.resume_tokens().verify(token, now)?;
    let until_ms = claim.expiry.saturating_mul(1000);
    match gw
        .bus
        .use_once(&format!("resume:{}", claim.id), until_ms)
        .await
    {
        Ok(true) => Ok(claim.user),
        Ok(false) => Err(ResumeTokenError::Used),
        Err(e) => {
            tracing::warn!(error = %e, "cannot record a resume token's use; refusing it");
            Err(ResumeTokenError::Used)
        }
    }
}

pub(super) fn resume_token(gw: &Gateway, user: Option<&str>) -> Option<String> {
    Some(gw.auth.resume_tokens().issue(user?, now_secs()))
}
