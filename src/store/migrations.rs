//! Versioned schema migrations, embedded in the binary and applied in order on open.

pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

pub const SQLITE: &[Migration] = &[
    Migration { version: 1, name: "init", sql: include_str!("../../migrations/sqlite/0001_init.sql") },
    Migration { version: 2, name: "served", sql: include_str!("../../migrations/sqlite/0002_served.sql") },
];

pub const POSTGRES: &[Migration] = &[
    Migration { version: 1, name: "init", sql: include_str!("../../migrations/postgres/0001_init.sql") },
    Migration { version: 2, name: "served", sql: include_str!("../../migrations/postgres/0002_served.sql") },
];
