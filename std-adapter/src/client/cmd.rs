//! `client.cmd(...)`: any command, classified by the core's command table.

use std::time::Duration;

use resilis_core::command::{self, Class, Flags};
use resilis_core::resp::encode::CommandEncoder;

use super::Client;
use crate::encoding::encode_vec;
use crate::error::Error;
use crate::value::{FromValue, ToArg, Value, convert};

impl Client {
    /// Any command: `client.cmd("HINCRBY").arg("h").arg("f").arg(1).query().await`.
    pub fn cmd(&self, name: &str) -> Cmd<'_> {
        let mut cmd = Cmd {
            client: self,
            args: Vec::new(),
            ends: Vec::new(),
            resend_safe: None,
            timeout: None,
        };
        name.write_arg(&mut cmd.args);
        cmd.ends.push(cmd.args.len());
        cmd
    }
}

/// A command under construction; see [`Client::cmd`].
#[must_use = "a command does nothing until .query().await"]
pub struct Cmd<'c> {
    client: &'c Client,
    /// Every argument's bytes back to back; `ends` marks where each ends.
    args: Vec<u8>,
    ends: Vec<usize>,
    resend_safe: Option<bool>,
    timeout: Option<Duration>,
}

impl Cmd<'_> {
    pub fn arg(mut self, arg: impl ToArg) -> Self {
        arg.write_arg(&mut self.args);
        self.ends.push(self.args.len());
        self
    }

    /// Safe to write twice after a reconnect? Default: what the core's
    /// command table says (reads, plain SET, MSET...).
    pub fn idempotent(mut self, idempotent: bool) -> Self {
        self.resend_safe = Some(idempotent);
        self
    }

    /// This command's deadline (default: the client's command timeout, or
    /// `blocking_timeout` for blocking commands).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    fn iter_args(&self) -> impl Iterator<Item = &[u8]> + Clone {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let arg = &self.args[start..end];
            start = end;
            arg
        })
    }

    /// The core's class of this command line, with the caller's override.
    fn class(&self) -> Class {
        let class = command::classify(self.iter_args());
        match self.resend_safe {
            Some(true) => Class::new(class.flags | Flags::RESEND_SAFE),
            Some(false) => Class::new(class.flags.without(Flags::RESEND_SAFE)),
            None => class,
        }
    }

    /// Sends the command; an error reply is [`Error::Server`]. Commands that
    /// would break the shared connection (the core's table refuses them:
    /// pub/sub, transactions, SELECT, CLIENT REPLY...) fail with
    /// [`Error::Unsupported`] without being sent.
    pub async fn query(self) -> Result<Value, Error> {
        let bytes = encode_vec(|b| {
            let mut enc = CommandEncoder::new(b, self.ends.len());
            for arg in self.iter_args() {
                enc.arg(arg);
            }
            enc.finish()
        });
        let class = self.class();
        let reply = self.client.request(bytes, class, self.timeout).await?;
        Ok(reply.value)
    }

    /// Sends the command and converts the reply.
    pub async fn query_as<T: FromValue>(self) -> Result<T, Error> {
        convert(self.query().await?)
    }
}
