//! Approvals: holding a call that no policy rule allows until a human
//! answers, and releasing exactly that call once, if they approve.
//!
//! # Lifecycle
//!
//! 1. **Hold.** The policy returns `Approve` (or nothing allowed the call). The
//!    proxy computes the call's digest (canonical JSON of server, tool,
//!    arguments, tool fingerprint, policy revision and principal) and first
//!    tries [`ApprovalStore::consume_grant`]: an approved, unused grant for
//!    this digest releases the call at once.
//! 2. **Request.** Otherwise it reuses [`ApprovalStore::pending_for_digest`] or
//!    records a new request with [`ApprovalStore::create`] (approvers, quorum,
//!    expiry and grant lifetime come from the policy's `approval` obligations).
//! 3. **Webhook.** The request document is POSTed to the configured webhook,
//!    signed the Standard Webhooks way ([`signing::sign`]); if it cannot be
//!    delivered the request is failed ([`ApprovalStore::fail`]) and the call
//!    denied.
//! 4. **Answers** arrive by the webhook's own signed response, by a signed POST
//!    to the firewall's approval endpoint (both [`bot`]: HMAC, freshness,
//!    replay, bound to the approval id and digest) or by the `mcp-firewall
//!    approvals` CLI, signed with the approver's registered SSH key
//!    ([`approvers`]), by a Slack button click signed by Slack ([`slack`]), or
//!    in the console by someone signed in through the OIDC provider
//!    ([`console`]); each carries a [`Proof`] and goes through
//!    [`ApprovalStore::answer`]. People are mapped to approver names by the
//!    [`directory`].
//! 5. **Grant.** One eligible deny decides `denied`; `quorum` distinct approvals
//!    decide `approved` and leave a grant.
//! 6. **Release.** The waiting call, or the client's identical retry after a
//!    "pending approval, call again" result, consumes the grant and receives a
//!    [`Grant`], the proof the proxy needs to build a forwarding `Permit`.
//!    A client cancellation withdraws the request
//!    ([`ApprovalStore::withdraw`]); silence until the deadline expires it
//!    ([`ApprovalStore::expire`]).
//!
//! # Invariants
//!
//! - **Bound to a digest**: a grant releases only a call with the same digest.
//! - **Single use**: consuming a grant is atomic; the second attempt gets none.
//!   A grant revoked before use releases nothing (also checked in memory).
//! - **Expiry**: a request takes no answers at or after `expires_at`; a grant
//!   is usable only before its own expiry.
//! - **Separation of duties**: the principal can never answer their own
//!   request; when the policy names approvers, only they can answer; every
//!   answer names its approver and gives a reason.
//! - **Quorum**: approval needs `quorum` *distinct* approvers; any one eligible
//!   deny is final.
//! - **Verified at release**: the store is a file the agent may write, so its
//!   status and grants are not trusted alone; every approving answer's proof
//!   is verified again with the keys and secrets this process loaded, under
//!   the releasing call's obligations ([`AnswerVerifier::verify_release`]).
//! - **Fail closed**: every store or signature error, and a release that
//!   cannot be audited, means the call is denied.
//! - **Durable**: all state is in SQLite ([`store`]), shared with the CLI
//!   process, so a restart loses nothing.
//!
//! # Modules
//!
//! | module | job |
//! |---|---|
//! | [`model`] | plain data: new requests and answers, stored records, statuses |
//! | [`signing`] | Standard Webhooks secrets, signing and verification |
//! | [`approvers`] | the `allowed_signers` registry and SSHSIG-signed answers |
//! | [`directory`] | `[[approver]]`: each person's keys, OIDC and Slack identities, groups |
//! | [`console`] | the browser console: OIDC sign-in, queue, answers, revocation |
//! | [`slack`] | Block Kit messages, Slack request signatures, button answers |
//! | [`teams`] | Adaptive Card notifications |
//! | [`proof`] | what an answer carries to prove its approver; verification at release |
//! | [`bot`] | answers from bots signed with a webhook secret (endpoint, sync response) |
//! | [`store`] | [`ApprovalStore`]: durable requests, answers, grants, replay ids |
//! | [`digest`] | the call digest an approval is bound to |
//! | [`webhook`] | delivery with retries; reading a synchronous answer |
//! | [`endpoint`] | the signed `POST /approvals/{id}` answer endpoint |
//! | [`service`] | [`Approvals`]: store + webhook + audit + wake-ups, shared by held calls |

pub mod approvers;
pub mod bot;
pub mod console;
pub mod digest;
pub mod directory;
pub mod endpoint;
pub mod model;
pub mod proof;
pub mod service;
pub mod signing;
pub mod slack;
pub mod store;
pub mod teams;
pub mod webhook;

pub use model::{
    AnswerOutcome, AnswerRecord, ApprovalRecord, NewAnswer, NewApproval, Status, Verdict,
};
pub use proof::{AnswerVerifier, Proof, ReleaseRules, VerifiedAnswer};
pub use service::{ApprovalSettings, Approvals};
pub use signing::{SignatureError, SignedHeaders, TIMESTAMP_TOLERANCE_SECS, WebhookSecret};
pub use store::{AnswerRejection, ApprovalStore, Grant, StoreError};
