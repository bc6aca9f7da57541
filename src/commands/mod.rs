//! One handler per command group: each reads its arguments, calls the
//! engine and hands the result to [`crate::render::Output`].

pub mod alert;
pub mod audit;
pub mod consent;
pub mod customer;
pub mod demo;
pub mod follow_up;
pub mod hold;
pub mod init;
pub mod interaction;
pub mod outbox;
pub mod plugin;
pub mod plugin_run;
pub mod policy;
pub mod principal;
pub mod purpose;
pub mod report;
pub mod retention;
pub mod session;
pub mod subject;
