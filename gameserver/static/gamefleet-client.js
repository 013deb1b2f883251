// GameFleet reference client (ES module, no dependencies). Implements the client contract of
// docs/protocol.md ("Drain and resume"): it keeps the resume token and the last position seen
// per room and for the user's inbox, reconnects with exponential backoff and full jitter after
// any close (at once, plus jitter, after a drain's 1012), resumes the session, and re-sends bets
// that were not acknowledged with the same idempotencyKey.
//
//   import { GameFleetClient } from "/gamefleet-client.js";
//   const client = new GameFleetClient({ url: "ws://host/ws", getToken: async () => jwt,
//     onFrame: (f) => render(f), onStatus: (s, detail) => show(s) });
//   client.connect(); client.join("dice-1");
//   client.placeBet({ gameId: "dice-1", amount: 100, selection: { direction: "over", target: 50 } });

const BASE_DELAY_MS = 250;
const MAX_DELAY_MS = 10_000;
const PING_EVERY_MS = 20_000;
/// Extra wait after `reconnectAfterMs` before closing a draining connection ourselves.
const DRAIN_GRACE_MS = 1_000;
/// Close codes after which the same credentials cannot work.
const AUTH_CLOSES = new Set([4001, 4029]);

/// Keeps the later of two positions (a new epoch replaces the old one).
export function laterPosition(known, seen) {
  if (!seen || typeof seen.offset !== "number") return known || null;
  if (!known || known.epoch !== seen.epoch || seen.offset > known.offset) return { offset: seen.offset, epoch: seen.epoch };
  return known;
}

/// Reconnect delay for attempt `n` (0-based): full jitter over an exponentially growing cap.
export function backoffDelay(n, random = Math.random) {
  const cap = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** n);
  return Math.floor(random() * cap);
}

export class GameFleetClient {
  constructor({ url, getToken, onFrame = () => {}, onStatus = () => {}, WebSocketImpl = globalThis.WebSocket }) {
    this.url = url;
    this.getToken = getToken;
    this.onFrame = onFrame;
    this.onStatus = onStatus;
    this.WebSocketImpl = WebSocketImpl;
    this.ws = null;
    this.userId = null;
    this.resumeToken = null;
    this.inbox = null; // last inbox position
    this.rooms = new Map(); // gameId -> last position (or null)
    this.players = new Map(); // gameId -> member count (game_joined, presence, resumed)
    this.unacked = new Map(); // idempotencyKey -> place_bet frame (not yet acknowledged)
    this.unsettled = new Map(); // idempotencyKey -> place_bet frame (acknowledged, not settled)
    this.attempt = 0;
    this.stopped = false;
    this.resuming = false;
    this.timers = new Set();
  }

  connect() {
    this.stopped = false;
    this.open();
  }

  /// Closes for good (no reconnect).
  close() {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    clearInterval(this.pinger);
    if (this.ws) this.ws.close(1000, "client closed");
  }

  /// Closes the socket as a network failure would (for tests and demos); the client resumes.
  simulateDrop() {
    if (this.ws) this.ws.close(4000, "simulated network drop");
  }

  join(gameId) {
    this.send({ type: "join_game", gameId });
  }

  leave(gameId) {
    this.rooms.delete(gameId);
    this.send({ type: "leave_game", gameId });
  }

  /// Sends a bet; returns its idempotencyKey. Until acknowledged it is re-sent after a reconnect.
  placeBet({ gameId, amount, selection, clientSeed, idempotencyKey }) {
    const key = idempotencyKey || "bet-" + Date.now().toString(36) + "-" + Math.random().toString(36).slice(2, 10);
    const frame = { type: "place_bet", gameId, amount, selection, idempotencyKey: key };
    if (clientSeed) frame.clientSeed = clientSeed;
    this.unacked.set(key, frame);
    this.send(frame);
    return key;
  }

  send(frame) {
    const ws = this.ws;
    if (ws && ws.readyState === 1 && this.userId) ws.send(JSON.stringify(frame));
  }

  later(ms, fn) {
    const t = setTimeout(() => { this.timers.delete(t); fn(); }, ms);
    this.timers.add(t);
  }

  open() {
    if (this.stopped) return;
    const ws = new this.WebSocketImpl(this.url);
    this.ws = ws;
    this.userId = null;
    this.onStatus("connecting", { attempt: this.attempt });
    ws.onopen = () => this.onOpen(ws);
    ws.onmessage = (e) => { if (ws === this.ws) this.onMessage(JSON.parse(e.data)); };
    ws.onclose = (e) => { if (ws === this.ws) this.onClose(e); };
    ws.onerror = () => {}; // a close follows
  }

  async onOpen(ws) {
    if (this.resumeToken) {
      this.resuming = true;
      const rooms = {};
      for (const [gameId, pos] of this.rooms) rooms[gameId] = pos;
      ws.send(JSON.stringify({ type: "resume", resumeToken: this.resumeToken, rooms, inbox: this.inbox }));
      return;
    }
    this.resuming = false;
    try {
      const token = await this.getToken();
      if (ws.readyState === 1) ws.send(JSON.stringify({ type: "authenticate", token }));
    } catch (e) {
      this.onStatus("token_failed", { error: String(e) });
      ws.close(4000, "no token");
    }
  }

  onClose(e) {
    clearInterval(this.pinger);
    this.userId = null;
    if (this.stopped) { this.onStatus("closed", { code: e.code }); return; }
    if (AUTH_CLOSES.has(e.code)) {
      if (!this.resuming) { this.onStatus("auth_failed", { code: e.code }); return; }
      // The resume token was refused (expired, other secret): authenticate afresh next time.
      this.resumeToken = null;
    }
    const delay = e.code === 1012 && this.attempt === 0
      ? Math.floor(Math.random() * BASE_DELAY_MS)
      : backoffDelay(this.attempt);
    this.attempt += 1;
    this.onStatus("reconnecting", { code: e.code, delayMs: delay });
    this.later(delay, () => this.open());
  }

  /// Drops a frame already seen (at or before the known position of its stream).
  isDuplicate(f) {
    const p = f.position;
    if (!p) return false;
    const known = p.gameId !== undefined ? this.rooms.get(p.gameId) : this.inbox;
    return !!known && known.epoch === p.epoch && p.offset <= known.offset;
  }

  track(f) {
    const p = f.position;
    if (!p) return;
    if (p.gameId !== undefined) {
      if (this.rooms.has(p.gameId)) this.rooms.set(p.gameId, laterPosition(this.rooms.get(p.gameId), p));
    } else if (p.userId !== undefined) {
      this.inbox = laterPosition(this.inbox, p);
    }
  }

  resendBets(includeAcknowledged) {
    if (includeAcknowledged) {
      for (const [k, f] of this.unsettled) this.unacked.set(k, f);
      this.unsettled.clear();
    }
    for (const f of this.unacked.values()) this.send(f);
  }

  onMessage(f) {
    if (this.isDuplicate(f)) return;
    this.track(f);
    switch (f.type) {
      case "authenticated":
        this.userId = f.userId;
        this.resumeToken = f.resumeToken || null;
        this.inbox = laterPosition(this.inbox, f.inbox);
        this.attempt = 0;
        this.startPing();
        // A fresh session (no resume possible): rejoin the rooms, learn outcomes by re-sending.
        for (const gameId of this.rooms.keys()) this.send({ type: "join_game", gameId });
        this.resendBets(true);
        this.onStatus("authenticated", { userId: f.userId });
        break;
      case "resumed": {
        this.userId = f.userId;
        this.resumeToken = f.resumeToken;
        this.attempt = 0;
        this.resuming = false;
        this.startPing();
        for (const [gameId, r] of Object.entries(f.rooms || {})) {
          if (r.error) this.rooms.delete(gameId);
          else if (!r.recovered) this.rooms.set(gameId, r.position || null);
          if (typeof r.players === "number") this.players.set(gameId, r.players);
        }
        if (f.inbox && !f.inbox.recovered) this.inbox = f.inbox.position || null;
        this.resendBets(!(f.inbox && f.inbox.recovered));
        this.onStatus("resumed", { rooms: f.rooms, inbox: f.inbox });
        break;
      }
      case "game_joined":
        this.rooms.set(f.gameId, laterPosition(this.rooms.get(f.gameId), f.position));
        this.players.set(f.gameId, f.players);
        break;
      case "game_left":
        this.rooms.delete(f.gameId);
        this.players.delete(f.gameId);
        break;
      // Joins and leaves: coalesced (presence), or one per change on gateways run with
      // --presence-interval-ms 0.
      case "presence":
      case "player_joined":
      case "player_left":
        if (this.rooms.has(f.gameId)) this.players.set(f.gameId, f.playerCount);
        break;
      case "bet_acknowledged": {
        const bet = this.unacked.get(f.idempotencyKey);
        this.unacked.delete(f.idempotencyKey);
        if (bet) this.unsettled.set(f.idempotencyKey, bet);
        break;
      }
      case "bet_settled":
      case "bet_rejected":
        this.unacked.delete(f.idempotencyKey);
        this.unsettled.delete(f.idempotencyKey);
        break;
      case "server_draining": {
        if (f.resumeToken) this.resumeToken = f.resumeToken;
        const ws = this.ws;
        this.later((f.reconnectAfterMs || 0) + DRAIN_GRACE_MS, () => {
          if (ws === this.ws && ws.readyState <= 1) ws.close(4000, "drain close overdue");
        });
        this.onStatus("draining", { reconnectAfterMs: f.reconnectAfterMs });
        break;
      }
      default:
        break;
    }
    this.onFrame(f);
  }

  startPing() {
    clearInterval(this.pinger);
    this.pinger = setInterval(() => this.send({ type: "ping" }), PING_EVERY_MS);
  }
}
