-- Humans signed in from a trusted OpenID provider carry that provider's issuer and their
-- subject there; the pair is unique, and is how a later sign-in finds the same human.
-- Humans registered by an administrator have neither.
ALTER TABLE humans ADD COLUMN idp_issuer TEXT;
ALTER TABLE humans ADD COLUMN idp_subject TEXT;
CREATE UNIQUE INDEX humans_identity ON humans (idp_issuer, idp_subject) WHERE idp_issuer IS NOT NULL;
