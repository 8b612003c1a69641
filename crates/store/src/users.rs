//! Users and user groups (RBAC): each a JSON document, with group membership kept in
//! `user_group_members` so that deleting a user takes it out of every group in the same
//! statement and a user's groups are read with it.
//!
//! Every change that depends on other users or groups (a group's members must exist and
//! match its engine, a user named `default` must stay in each group, ...) runs its check
//! inside the write transaction, on what that transaction reads: two concurrent requests
//! cannot both pass a check that only one of them may pass.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::cache_clusters::{decode, encode};
use crate::events::insert_events;
use crate::{EventRecord, Result, Scope, Store, StoreError, TagRecord, Tx, UpdateError, delete_resource, insert_tags};

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub id: String,
    pub name: String,
    /// `redis` or `valkey`.
    pub engine: String,
    /// As the user wrote it: AWS echoes it verbatim.
    pub access_string: String,
    /// `password`, `no-password` or `iam` (AWS's `Authentication.Type`).
    pub authentication: String,
    /// SHA-256 (lowercase hex) of each password: what `ACL SETUSER … #<hash>` takes, so
    /// nodes can be configured without the store ever holding a password.
    pub password_hashes: Vec<String>,
    /// active, modifying, deleting.
    pub status: String,
    pub created_millis: i64,
}

// Hand-written so that no log line or panic message can carry a password hash.
impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRecord")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("engine", &self.engine)
            .field("access_string", &self.access_string)
            .field("authentication", &self.authentication)
            .field("password_hashes", &format_args!("[{} redacted]", self.password_hashes.len()))
            .field("status", &self.status)
            .finish()
    }
}

/// A user with the ids of the groups it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub user: UserRecord,
    pub group_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserGroupRecord {
    pub id: String,
    /// `redis` or `valkey`.
    pub engine: String,
    /// creating, active, modifying, deleting.
    pub status: String,
    /// Replication groups the group is attached to (`UserGroupIds` on a replication
    /// group); while there is one, the group cannot be deleted.
    #[serde(default)]
    pub replication_groups: Vec<String>,
    pub created_millis: i64,
}

/// A group with its members' ids, in the order they were added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserGroup {
    pub group: UserGroupRecord,
    pub user_ids: Vec<String>,
}

async fn read_users(conn: &mut sqlx::SqliteConnection, scope: &Scope, id: Option<&str>) -> Result<Vec<User>> {
    let rows =
        sqlx::query("SELECT data FROM users WHERE region = ? AND account = ? AND (? IS NULL OR id = ?) ORDER BY id")
            .bind(&scope.region)
            .bind(&scope.account)
            .bind(id)
            .bind(id)
            .fetch_all(&mut *conn)
            .await?;
    let memberships = sqlx::query(
        "SELECT user_id, group_id FROM user_group_members
         WHERE region = ? AND account = ? AND (? IS NULL OR user_id = ?) ORDER BY group_id",
    )
    .bind(&scope.region)
    .bind(&scope.account)
    .bind(id)
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let mut users = Vec::with_capacity(rows.len());
    for row in rows {
        let user: UserRecord = decode(row.get("data"))?;
        let group_ids = memberships
            .iter()
            .filter(|m| m.get::<String, _>("user_id") == user.id)
            .map(|m| m.get::<String, _>("group_id"))
            .collect();
        users.push(User { user, group_ids });
    }
    Ok(users)
}

async fn read_groups(conn: &mut sqlx::SqliteConnection, scope: &Scope, id: Option<&str>) -> Result<Vec<UserGroup>> {
    let rows = sqlx::query(
        "SELECT data FROM user_groups WHERE region = ? AND account = ? AND (? IS NULL OR id = ?) ORDER BY id",
    )
    .bind(&scope.region)
    .bind(&scope.account)
    .bind(id)
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let members = sqlx::query(
        "SELECT group_id, user_id FROM user_group_members
         WHERE region = ? AND account = ? AND (? IS NULL OR group_id = ?) ORDER BY position",
    )
    .bind(&scope.region)
    .bind(&scope.account)
    .bind(id)
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let mut groups = Vec::with_capacity(rows.len());
    for row in rows {
        let group: UserGroupRecord = decode(row.get("data"))?;
        let user_ids = members
            .iter()
            .filter(|m| m.get::<String, _>("group_id") == group.id)
            .map(|m| m.get::<String, _>("user_id"))
            .collect();
        groups.push(UserGroup { group, user_ids });
    }
    Ok(groups)
}

async fn write_user(tx: &mut sqlx::SqliteConnection, scope: &Scope, user: &UserRecord) -> Result<()> {
    sqlx::query("UPDATE users SET data = ? WHERE region = ? AND account = ? AND id = ?")
        .bind(encode(user)?)
        .bind(&scope.region)
        .bind(&scope.account)
        .bind(&user.id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Writes a group's document and replaces its member list.
async fn write_group(
    tx: &mut sqlx::SqliteConnection,
    scope: &Scope,
    group: &UserGroupRecord,
    user_ids: &[String],
) -> Result<()> {
    sqlx::query("UPDATE user_groups SET data = ? WHERE region = ? AND account = ? AND id = ?")
        .bind(encode(group)?)
        .bind(&scope.region)
        .bind(&scope.account)
        .bind(&group.id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM user_group_members WHERE region = ? AND account = ? AND group_id = ?")
        .bind(&scope.region)
        .bind(&scope.account)
        .bind(&group.id)
        .execute(&mut *tx)
        .await?;
    for (position, user_id) in user_ids.iter().enumerate() {
        sqlx::query(
            "INSERT INTO user_group_members (region, account, group_id, user_id, position) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&scope.region)
        .bind(&scope.account)
        .bind(&group.id)
        .bind(user_id)
        .bind(position as i64)
        .execute(&mut *tx)
        .await
        .map_err(|e| match &e {
            // A member that is not a user: the caller's check let an unknown id through.
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound,
            _ => StoreError::Database(e),
        })?;
    }
    Ok(())
}

async fn count(tx: &mut sqlx::SqliteConnection, table: &str, scope: &Scope) -> Result<usize> {
    let count: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table} WHERE region = ? AND account = ?"))
        .bind(&scope.region)
        .bind(&scope.account)
        .fetch_one(&mut *tx)
        .await?;
    Ok(count as usize)
}

impl Store {
    /// Creates a user. [`StoreError::AlreadyExists`] when the id is taken,
    /// [`StoreError::QuotaExceeded`] past `quota` users; with `quota: None` an existing user
    /// of that id is left as it is (for the scope's built-in `default` user).
    pub async fn create_user(
        &self,
        scope: &Scope,
        user: &UserRecord,
        arn: &str,
        tags: &[TagRecord],
        quota: Option<usize>,
        events: &[EventRecord],
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        if let Some(quota) = quota
            && count(&mut tx, "users", scope).await? >= quota
        {
            return Err(StoreError::QuotaExceeded(quota));
        }
        let verb = if quota.is_some() { "INSERT" } else { "INSERT OR IGNORE" };
        let inserted = sqlx::query(&format!("{verb} INTO users (region, account, id, data) VALUES (?, ?, ?, ?)"))
            .bind(&scope.region)
            .bind(&scope.account)
            .bind(&user.id)
            .bind(encode(user)?)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from_insert)?
            .rows_affected();
        if inserted > 0 {
            insert_tags(&mut tx, arn, tags).await?;
            insert_events(&mut tx, scope, events).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn user(&self, scope: &Scope, id: &str) -> Result<Option<User>> {
        let mut conn = self.pool.acquire().await?;
        Ok(read_users(&mut conn, scope, Some(id)).await?.into_iter().next())
    }

    /// Every user of the scope, by id.
    pub async fn users(&self, scope: &Scope) -> Result<Vec<User>> {
        let mut conn = self.pool.acquire().await?;
        read_users(&mut conn, scope, None).await
    }

    /// Read-modify-write of a user under the write lock; `change` also sees the groups the
    /// user belongs to, with their members. `Ok(None)`: no such user.
    pub async fn update_user<E>(
        &self,
        scope: &Scope,
        id: &str,
        change: impl FnOnce(&mut UserRecord, &[UserGroup], &[User]) -> std::result::Result<Vec<EventRecord>, E>,
    ) -> std::result::Result<Option<User>, UpdateError<E>> {
        self.write(async |tx| {
            let Some(mut current) = read_users(tx, scope, Some(id)).await?.into_iter().next() else {
                return Ok(None);
            };
            let groups: Vec<UserGroup> = read_groups(tx, scope, None)
                .await?
                .into_iter()
                .filter(|g| current.group_ids.contains(&g.group.id))
                .collect();
            let users = read_users(tx, scope, None).await?;
            let events = change(&mut current.user, &groups, &users).map_err(UpdateError::Rejected)?;
            write_user(tx, scope, &current.user).await?;
            insert_events(tx, scope, &events).await?;
            Ok(Some(current))
        })
        .await
    }

    /// Deletes a user, its group memberships and its tags once `check` (which sees the user
    /// as it is) agrees. `Ok(None)`: no such user.
    pub async fn delete_user<E>(
        &self,
        scope: &Scope,
        id: &str,
        arn: &str,
        check: impl FnOnce(&User) -> std::result::Result<Vec<EventRecord>, E>,
    ) -> std::result::Result<Option<User>, UpdateError<E>> {
        self.write(async |tx| {
            let Some(current) = read_users(tx, scope, Some(id)).await?.into_iter().next() else {
                return Ok(None);
            };
            let events = check(&current).map_err(UpdateError::Rejected)?;
            delete_resource(tx, "users", "id", scope, id, arn, &events).await?;
            Ok(Some(current))
        })
        .await
    }

    /// Creates a group with its members once `check`, which sees every user of the
    /// scope, agrees. Store errors: [`StoreError::AlreadyExists`] when the id is taken,
    /// [`StoreError::QuotaExceeded`] past `quota` groups.
    pub async fn create_user_group<E>(
        &self,
        scope: &Scope,
        new: &UserGroup,
        arn: &str,
        tags: &[TagRecord],
        quota: usize,
        check: impl FnOnce(&[User]) -> std::result::Result<Vec<EventRecord>, E>,
    ) -> std::result::Result<(), UpdateError<E>> {
        let group = &new.group;
        self.write(async |tx| {
            let exists: Option<i64> =
                sqlx::query_scalar("SELECT 1 FROM user_groups WHERE region = ? AND account = ? AND id = ?")
                    .bind(&scope.region)
                    .bind(&scope.account)
                    .bind(&group.id)
                    .fetch_optional(&mut **tx)
                    .await?;
            if exists.is_some() {
                return Err(StoreError::AlreadyExists.into());
            }
            if count(tx, "user_groups", scope).await? >= quota {
                return Err(StoreError::QuotaExceeded(quota).into());
            }
            let users = read_users(tx, scope, None).await?;
            let events = check(&users).map_err(UpdateError::Rejected)?;
            sqlx::query("INSERT INTO user_groups (region, account, id, data) VALUES (?, ?, ?, ?)")
                .bind(&scope.region)
                .bind(&scope.account)
                .bind(&group.id)
                .bind(encode(group)?)
                .execute(&mut **tx)
                .await
                .map_err(StoreError::from_insert)?;
            write_group(tx, scope, group, &new.user_ids).await?;
            insert_tags(tx, arn, tags).await?;
            insert_events(tx, scope, &events).await?;
            Ok(())
        })
        .await
    }

    pub async fn user_group(&self, scope: &Scope, id: &str) -> Result<Option<UserGroup>> {
        let mut conn = self.pool.acquire().await?;
        Ok(read_groups(&mut conn, scope, Some(id)).await?.into_iter().next())
    }

    /// Every group of the scope, by id.
    pub async fn user_groups(&self, scope: &Scope) -> Result<Vec<UserGroup>> {
        let mut conn = self.pool.acquire().await?;
        read_groups(&mut conn, scope, None).await
    }

    /// A group with the full records of its members (password hashes included), in the
    /// order they were added: what configuring a node's ACL needs. `Ok(None)`: no such group.
    pub async fn user_group_with_users(&self, scope: &Scope, id: &str) -> Result<Option<(UserGroup, Vec<UserRecord>)>> {
        let mut conn = self.pool.acquire().await?;
        let Some(group) = read_groups(&mut conn, scope, Some(id)).await?.into_iter().next() else {
            return Ok(None);
        };
        let users = read_users(&mut conn, scope, None).await?;
        let members = group
            .user_ids
            .iter()
            .filter_map(|id| users.iter().find(|u| &u.user.id == id).map(|u| u.user.clone()))
            .collect();
        Ok(Some((group, members)))
    }

    /// Read-modify-write of a group and its member list under the write lock; `change` also
    /// sees every user of the scope. `Ok(None)`: no such group.
    pub async fn update_user_group<E>(
        &self,
        scope: &Scope,
        id: &str,
        change: impl FnOnce(&mut UserGroupRecord, &mut Vec<String>, &[User]) -> std::result::Result<Vec<EventRecord>, E>,
    ) -> std::result::Result<Option<UserGroup>, UpdateError<E>> {
        self.write(async |tx| tx.update_user_group(scope, id, change).await).await
    }

    /// Deletes a group (its memberships go with it) and its tags once `check` agrees.
    /// `Ok(None)`: no such group.
    pub async fn delete_user_group<E>(
        &self,
        scope: &Scope,
        id: &str,
        arn: &str,
        check: impl FnOnce(&UserGroup) -> std::result::Result<Vec<EventRecord>, E>,
    ) -> std::result::Result<Option<UserGroup>, UpdateError<E>> {
        self.write(async |tx| {
            let Some(current) = read_groups(tx, scope, Some(id)).await?.into_iter().next() else {
                return Ok(None);
            };
            let events = check(&current).map_err(UpdateError::Rejected)?;
            delete_resource(tx, "user_groups", "id", scope, id, arn, &events).await?;
            Ok(Some(current))
        })
        .await
    }
}

impl Tx {
    /// Read-modify-write of one user group (the scope's users given for checks).
    /// `Ok(None)`: no such group.
    pub async fn update_user_group<E>(
        &mut self,
        scope: &Scope,
        id: &str,
        change: impl FnOnce(&mut UserGroupRecord, &mut Vec<String>, &[User]) -> std::result::Result<Vec<EventRecord>, E>,
    ) -> std::result::Result<Option<UserGroup>, UpdateError<E>> {
        let Some(mut current) = read_groups(self, scope, Some(id)).await?.into_iter().next() else { return Ok(None) };
        let users = read_users(self, scope, None).await?;
        let events = change(&mut current.group, &mut current.user_ids, &users).map_err(UpdateError::Rejected)?;
        write_group(self, scope, &current.group, &current.user_ids).await?;
        self.record_events(scope, &events).await?;
        Ok(Some(current))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        Scope { region: "us-east-1".into(), account: "000000000000".into() }
    }

    fn user(id: &str, name: &str) -> UserRecord {
        UserRecord {
            id: id.into(),
            name: name.into(),
            engine: "redis".into(),
            access_string: "on ~* +@all".into(),
            authentication: "password".into(),
            password_hashes: vec!["ab".repeat(32)],
            status: "active".into(),
            created_millis: 0,
        }
    }

    fn group(id: &str) -> UserGroupRecord {
        UserGroupRecord {
            id: id.into(),
            engine: "redis".into(),
            status: "active".into(),
            replication_groups: Vec::new(),
            created_millis: 0,
        }
    }

    #[tokio::test]
    async fn deleting_a_user_removes_it_from_its_groups() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("db.sqlite")).await.expect("open");
        let s = scope();
        for u in [user("default", "default"), user("app", "app")] {
            store.create_user(&s, &u, "arn:u", &[], Some(10), &[]).await.expect("create user");
        }
        let new = UserGroup { group: group("g1"), user_ids: vec!["default".to_string(), "app".to_string()] };
        store
            .create_user_group(&s, &new, "arn:g", &[], 10, |users| {
                assert_eq!(users.len(), 2);
                Ok::<_, ()>(Vec::new())
            })
            .await
            .expect("create group");
        let app = store.user(&s, "app").await.expect("read").expect("app");
        assert_eq!(app.group_ids, ["g1"]);
        assert!(format!("{:?}", app.user).contains("redacted"), "hashes never in Debug output");
        assert!(!format!("{:?}", app.user).contains(&"ab".repeat(32)));

        store.delete_user(&s, "app", "arn:u", |_| Ok::<_, ()>(Vec::new())).await.expect("delete").expect("found");
        let g = store.user_group(&s, "g1").await.expect("read").expect("g1");
        assert_eq!(g.user_ids, ["default"]);
        let (_, members) = store.user_group_with_users(&s, "g1").await.expect("read").expect("g1");
        assert_eq!(members.len(), 1);
        assert_eq!(members[0].id, "default");
    }

    #[tokio::test]
    async fn rejected_changes_write_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("db.sqlite")).await.expect("open");
        let s = scope();
        store.create_user(&s, &user("default", "default"), "arn:u", &[], None, &[]).await.expect("seed");
        // Seeding twice leaves the first as it is.
        store.create_user(&s, &user("default", "other"), "arn:u", &[], None, &[]).await.expect("seed again");
        assert_eq!(store.user(&s, "default").await.expect("read").expect("default").user.name, "default");
        let result = {
            let new = UserGroup { group: group("g1"), user_ids: vec!["default".into()] };
            store.create_user_group(&s, &new, "arn:g", &[], 10, |_| Err("no")).await
        };
        assert!(matches!(result, Err(UpdateError::Rejected("no"))));
        assert!(store.user_group(&s, "g1").await.expect("read").is_none());
        let err = store.create_user(&s, &user("default", "x"), "arn:u", &[], Some(10), &[]).await;
        assert!(matches!(err, Err(StoreError::AlreadyExists)));
        let err = store.create_user(&s, &user("second", "x"), "arn:u", &[], Some(1), &[]).await;
        assert!(matches!(err, Err(StoreError::QuotaExceeded(1))));
    }
}
