//! Who is connected to this gateway: connections, local room membership and the user index.
//! Plain maps behind short-held locks; nothing here awaits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use uuid::Uuid;

use super::handle::ConnHandle;

#[derive(Default)]
pub struct Registry {
    conns: Mutex<HashMap<Uuid, Arc<ConnHandle>>>,
    rooms: RwLock<HashMap<String, HashMap<Uuid, Arc<ConnHandle>>>>,
    users: Mutex<HashMap<Arc<str>, Vec<Arc<ConnHandle>>>>,
}

use crate::sync::lock;

impl Registry {
    pub fn insert(&self, conn: Arc<ConnHandle>) {
        lock(&self.conns).insert(conn.id, conn);
    }

    pub fn remove(&self, id: &Uuid) {
        lock(&self.conns).remove(id);
    }

    pub fn connection_count(&self) -> usize {
        lock(&self.conns).len()
    }

    /// A copy of every connection handle, so callers iterate without holding the lock.
    pub fn snapshot(&self) -> Vec<Arc<ConnHandle>> {
        lock(&self.conns).values().cloned().collect()
    }

    /// Adds a member; returns true when it is the room's first member on this gateway.
    pub fn join_room(&self, room: &str, conn: &Arc<ConnHandle>) -> bool {
        let mut rooms = self.rooms.write().unwrap_or_else(|e| e.into_inner());
        let members = rooms.entry(room.to_owned()).or_default();
        members.insert(conn.id, Arc::clone(conn));
        members.len() == 1
    }

    /// Removes a member; returns the number of members left on this gateway (0: room gone).
    pub fn leave_room(&self, room: &str, id: &Uuid) -> usize {
        let mut rooms = self.rooms.write().unwrap_or_else(|e| e.into_inner());
        let Some(members) = rooms.get_mut(room) else {
            return 0;
        };
        members.remove(id);
        let left = members.len();
        if left == 0 {
            rooms.remove(room);
        }
        left
    }

    pub fn room_count(&self) -> usize {
        self.rooms.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Calls `f` for every local member of `room` under the read lock (`f` must not block).
    pub fn for_each_in_room(&self, room: &str, mut f: impl FnMut(&Arc<ConnHandle>)) {
        let rooms = self.rooms.read().unwrap_or_else(|e| e.into_inner());
        if let Some(members) = rooms.get(room) {
            members.values().for_each(&mut f);
        }
    }

    /// Indexes an authenticated connection under its user, unless the user already has `max`.
    pub fn add_user(&self, user: &Arc<str>, conn: &Arc<ConnHandle>, max: usize) -> bool {
        let mut users = lock(&self.users);
        let conns = users.entry(Arc::clone(user)).or_default();
        if conns.len() >= max {
            if conns.is_empty() {
                users.remove(user);
            }
            return false;
        }
        conns.push(Arc::clone(conn));
        true
    }

    pub fn remove_user(&self, user: &str, id: &Uuid) {
        let mut users = lock(&self.users);
        if let Some(conns) = users.get_mut(user) {
            conns.retain(|c| c.id != *id);
            if conns.is_empty() {
                users.remove(user);
            }
        }
    }

    /// Authenticated connections of `user` on this gateway.
    pub fn user_connections(&self, user: &str) -> usize {
        lock(&self.users).get(user).map_or(0, Vec::len)
    }

    pub fn for_each_of_user(&self, user: &str, mut f: impl FnMut(&Arc<ConnHandle>)) {
        if let Some(conns) = lock(&self.users).get(user) {
            conns.iter().for_each(&mut f);
        }
    }

    pub fn for_each(&self, mut f: impl FnMut(&Arc<ConnHandle>)) {
        lock(&self.conns).values().for_each(&mut f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    fn conn() -> Arc<ConnHandle> {
        let (tx, _rx) = mpsc::channel(1);
        Arc::new(ConnHandle::new(tx, 0))
    }

    #[test]
    fn rooms_report_first_and_last_local_member() {
        let r = Registry::default();
        let (a, b) = (conn(), conn());
        assert!(r.join_room("g", &a));
        assert!(!r.join_room("g", &b));
        assert!(!r.join_room("g", &b), "joining twice is harmless");
        let mut seen = 0;
        r.for_each_in_room("g", |_| seen += 1);
        assert_eq!(seen, 2);
        assert_eq!(r.leave_room("g", &a.id), 1);
        assert_eq!(r.room_count(), 1);
        assert_eq!(r.leave_room("g", &b.id), 0);
        assert_eq!(r.room_count(), 0);
        assert_eq!(r.leave_room("g", &b.id), 0);
    }

    #[test]
    fn user_index_enforces_the_per_user_limit() {
        let r = Registry::default();
        let user: Arc<str> = Arc::from("alice");
        let (a, b, c) = (conn(), conn(), conn());
        assert!(r.add_user(&user, &a, 2));
        assert!(r.add_user(&user, &b, 2));
        assert!(!r.add_user(&user, &c, 2));
        let mut n = 0;
        r.for_each_of_user("alice", |_| n += 1);
        assert_eq!(n, 2);
        r.remove_user("alice", &a.id);
        assert!(r.add_user(&user, &c, 2));
        r.remove_user("alice", &b.id);
        r.remove_user("alice", &c.id);
        let mut n = 0;
        r.for_each_of_user("alice", |_| n += 1);
        assert_eq!(n, 0);
        assert!(!r.add_user(&Arc::from("bob"), &a, 0));
    }
}
