//! Sender-constrained warrants (RFC 9449, DPoP): the proofs presented with requests,
//! checked against the request and the warrant's `cnf.jkt`, and the register of proofs
//! already seen, so none is used twice. One register serves the token endpoint, the
//! decision path and introspection: a proof names its request (method and URL), so it is
//! good at one endpoint only, and once.

use std::sync::Arc;

use warrant_core::{Confirmation, UnixTime};
use warrant_store::Store;
use warrant_token::dpop::{verify_proof, Expected, Proof, ProofError, ProofRegister, MAX_PROOF_AGE, PROOF_SKEW};

/// A DPoP proof as it arrived: the `DPoP` header's value, and the method and URL of the
/// request it came with (as this server's public address names it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentedProof {
    /// The proof (a compact JWS).
    pub proof: String,
    /// The request's HTTP method.
    pub htm: String,
    /// The request's URL.
    pub htu: String,
}

/// Why a request's proof was refused, or missing where the warrant needs one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DpopError {
    /// The warrant is DPoP-bound and no proof came with it.
    #[error("the warrant is DPoP-bound: send a DPoP proof made with its key for this request")]
    Missing,
    /// The proof was refused.
    #[error(transparent)]
    Proof(#[from] ProofError),
    /// Whether the proof was used at another server sharing the database could not be
    /// told, so it is refused (fail closed).
    #[error("the DPoP proof could not be checked against the other servers: {0}")]
    Unavailable(String),
}

/// The register of proofs seen: each is accepted once. Servers sharing a database also
/// spend each proof in the database, so a proof is accepted once across them.
#[derive(Default)]
pub struct Dpop {
    seen: ProofRegister,
    /// The shared database, when servers share one.
    store: Option<Arc<dyn Store>>,
}

impl std::fmt::Debug for Dpop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dpop").field("remembered", &self.seen.len()).field("shared", &self.store.is_some()).finish()
    }
}

impl Dpop {
    /// The register for a server on `store`: proofs are also spent in the store when
    /// other servers share it.
    pub(crate) fn on(store: Arc<dyn Store>) -> Self {
        let store = store.shared().then_some(store);
        Dpop { seen: ProofRegister::default(), store }
    }

    /// Spends `proof` in the shared database, when there is one (after this server's own
    /// register accepted it).
    async fn spend_shared(&self, proof: &Proof, now: UnixTime) -> Result<(), DpopError> {
        let Some(store) = &self.store else { return Ok(()) };
        let until = UnixTime(proof.iat.0.saturating_add(MAX_PROOF_AGE + PROOF_SKEW + 1));
        match store.spend_proof(&proof.jkt, &proof.jti, until, now).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(DpopError::Proof(ProofError::Replayed)),
            Err(e) => Err(DpopError::Unavailable(e.to_string())),
        }
    }

    /// Verifies `presented` for its request (and `token`, when one is presented with it)
    /// without spending it: the caller spends it with [`Dpop::spend_verified`] once the
    /// request's sender is authenticated, so nobody unauthenticated fills the register.
    pub fn verify(&self, presented: &PresentedProof, token: Option<&str>, now: UnixTime) -> Result<Proof, DpopError> {
        let expected = Expected { htm: &presented.htm, htu: &presented.htu, token };
        Ok(verify_proof(&presented.proof, &expected, now)?)
    }

    /// Spends a proof [`Dpop::verify`] accepted: the same proof is refused from then on,
    /// here and at every server sharing the database.
    pub async fn spend_verified(&self, proof: &Proof, now: UnixTime) -> Result<(), DpopError> {
        self.seen.spend(proof, now)?;
        self.spend_shared(proof, now).await
    }

    /// Verifies and spends `presented` at once.
    pub async fn spend(
        &self,
        presented: &PresentedProof,
        token: Option<&str>,
        now: UnixTime,
    ) -> Result<Proof, DpopError> {
        let proof = self.verify(presented, token, now)?;
        self.spend_verified(&proof, now).await?;
        Ok(proof)
    }

    /// For a warrant confirmed by `cnf`: the proof must be there, valid for its request
    /// and `token`, made with the bound key, and unused (it is spent only then). An unbound
    /// warrant needs none, and a proof that comes with it is ignored.
    pub async fn check_bound(
        &self,
        cnf: Option<&Confirmation>,
        presented: Option<&PresentedProof>,
        token: Option<&str>,
        now: UnixTime,
    ) -> Result<(), DpopError> {
        let (cnf, presented) = match (cnf, presented) {
            // A proof with an unbound warrant is ignored, never remembered.
            (None, _) => return Ok(()),
            (Some(_), None) => return Err(DpopError::Missing),
            (Some(c), Some(p)) => (c, p),
        };
        let expected = Expected { htm: &presented.htm, htu: &presented.htu, token };
        let proof = self.seen.accept(&presented.proof, &expected, &cnf.jkt, now)?;
        self.spend_shared(&proof, now).await
    }

    /// How many proofs are remembered.
    pub fn remembered(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine as _;
    use serde_json::json;
    use warrant_token::KeyPair;

    const URL: &str = "https://as.example/v1/authorize";

    fn proof(key: &KeyPair, jti: &str, iat: i64) -> PresentedProof {
        let header = json!({
            "typ": "dpop+jwt", "alg": "EdDSA",
            "jwk": { "kty": "OKP", "crv": "Ed25519", "x": B64.encode(key.verifying_key().as_bytes()) },
        });
        let claims = json!({ "htm": "POST", "htu": URL, "iat": iat, "jti": jti });
        let input = format!(
            "{}.{}",
            B64.encode(serde_json::to_vec(&header).unwrap()),
            B64.encode(serde_json::to_vec(&claims).unwrap())
        );
        let signature = B64.encode(key.sign(input.as_bytes()).to_bytes());
        PresentedProof { proof: format!("{input}.{signature}"), htm: "POST".into(), htu: URL.into() }
    }

    #[test]
    fn of_many_concurrent_presentations_of_one_proof_exactly_one_is_accepted() {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let register = Dpop::default();
        let key = KeyPair::from_seed(&[7; 32]);
        for round in 0..20 {
            let presented = proof(&key, &format!("jti-{round}"), 1000);
            let accepted = std::sync::atomic::AtomicUsize::new(0);
            std::thread::scope(|s| {
                for _ in 0..8 {
                    s.spawn(|| match rt.block_on(register.spend(&presented, None, UnixTime(1001))) {
                        Ok(_) => drop(accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst)),
                        Err(e) => assert_eq!(e, DpopError::Proof(ProofError::Replayed)),
                    });
                }
            });
            assert_eq!(accepted.into_inner(), 1, "round {round}");
        }
        assert_eq!(register.remembered(), 20);
    }

    #[tokio::test]
    async fn a_bound_warrant_needs_a_proof_of_its_own_key() {
        let register = Dpop::default();
        let key = KeyPair::from_seed(&[8; 32]);
        let cnf = Confirmation { jkt: key.kid().to_owned() };
        let now = UnixTime(1001);
        assert_eq!(register.check_bound(Some(&cnf), None, None, now).await, Err(DpopError::Missing));
        assert_eq!(register.check_bound(None, None, None, now).await, Ok(()));
        assert!(register.check_bound(Some(&cnf), Some(&proof(&key, "a", 1000)), None, now).await.is_ok());
        let other = KeyPair::from_seed(&[9; 32]);
        assert_eq!(
            register.check_bound(Some(&cnf), Some(&proof(&other, "b", 1000)), None, now).await,
            Err(DpopError::Proof(ProofError::WrongKey))
        );
        // A proof too old to be accepted anyway is not remembered past its age.
        assert!(register
            .check_bound(Some(&cnf), Some(&proof(&key, "c", 1000)), None, UnixTime(1000 + 61))
            .await
            .is_err());
    }
}
