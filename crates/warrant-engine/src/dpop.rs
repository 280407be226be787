//! Sender-constrained warrants (RFC 9449, DPoP): the proofs presented with requests,
//! checked against the request and the warrant's `cnf.jkt`, and the register of proofs
//! already seen, so none is used twice. One register serves the token endpoint, the
//! decision path and introspection: a proof names its request (method and URL), so it is
//! good at one endpoint only, and once.

use warrant_core::{Confirmation, UnixTime};
use warrant_token::dpop::{verify_proof, Expected, Proof, ProofError, ProofRegister};

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
}

/// The register of proofs seen: each is accepted once.
#[derive(Debug, Default)]
pub struct Dpop {
    seen: ProofRegister,
}

impl Dpop {
    /// Verifies `presented` for its request (and `token`, when one is presented with it)
    /// without spending it: the caller spends it with [`Dpop::spend_verified`] once the
    /// request's sender is authenticated, so nobody unauthenticated fills the register.
    pub fn verify(&self, presented: &PresentedProof, token: Option<&str>, now: UnixTime) -> Result<Proof, DpopError> {
        let expected = Expected { htm: &presented.htm, htu: &presented.htu, token };
        Ok(verify_proof(&presented.proof, &expected, now)?)
    }

    /// Spends a proof [`Dpop::verify`] accepted: the same proof is refused from then on.
    pub fn spend_verified(&self, proof: &Proof, now: UnixTime) -> Result<(), DpopError> {
        Ok(self.seen.spend(proof, now)?)
    }

    /// Verifies and spends `presented` at once.
    pub fn spend(&self, presented: &PresentedProof, token: Option<&str>, now: UnixTime) -> Result<Proof, DpopError> {
        let proof = self.verify(presented, token, now)?;
        self.spend_verified(&proof, now)?;
        Ok(proof)
    }

    /// For a warrant confirmed by `cnf`: the proof must be there, valid for its request
    /// and `token`, made with the bound key, and unused (it is spent only then). An unbound
    /// warrant needs none, and a proof that comes with it is ignored.
    pub fn check_bound(
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
        self.seen.accept(&presented.proof, &expected, &cnf.jkt, now)?;
        Ok(())
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
        let register = Dpop::default();
        let key = KeyPair::from_seed(&[7; 32]);
        for round in 0..20 {
            let presented = proof(&key, &format!("jti-{round}"), 1000);
            let accepted = std::sync::atomic::AtomicUsize::new(0);
            std::thread::scope(|s| {
                for _ in 0..8 {
                    s.spawn(|| match register.spend(&presented, None, UnixTime(1001)) {
                        Ok(_) => drop(accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst)),
                        Err(e) => assert_eq!(e, DpopError::Proof(ProofError::Replayed)),
                    });
                }
            });
            assert_eq!(accepted.into_inner(), 1, "round {round}");
        }
        assert_eq!(register.remembered(), 20);
    }

    #[test]
    fn a_bound_warrant_needs_a_proof_of_its_own_key() {
        let register = Dpop::default();
        let key = KeyPair::from_seed(&[8; 32]);
        let cnf = Confirmation { jkt: key.kid().to_owned() };
        let now = UnixTime(1001);
        assert_eq!(register.check_bound(Some(&cnf), None, None, now), Err(DpopError::Missing));
        assert_eq!(register.check_bound(None, None, None, now), Ok(()));
        assert!(register.check_bound(Some(&cnf), Some(&proof(&key, "a", 1000)), None, now).is_ok());
        let other = KeyPair::from_seed(&[9; 32]);
        assert_eq!(
            register.check_bound(Some(&cnf), Some(&proof(&other, "b", 1000)), None, now),
            Err(DpopError::Proof(ProofError::WrongKey))
        );
        // A proof too old to be accepted anyway is not remembered past its age.
        assert!(register.check_bound(Some(&cnf), Some(&proof(&key, "c", 1000)), None, UnixTime(1000 + 61)).is_err());
    }
}
