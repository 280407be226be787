-- Keys at rest: signing keys are sealed with a key-encryption key kept outside the
-- database. `sealed` holds the sealed seed (version byte, nonce, ciphertext, tag); `seed`
-- keeps a plaintext seed only until the engine seals it at start, then it is emptied
-- (x''). `purpose` separates the warrant-signing keys from the audit checkpoint keys.
ALTER TABLE signing_keys ADD COLUMN purpose TEXT NOT NULL DEFAULT 'warrant';
ALTER TABLE signing_keys ADD COLUMN sealed BLOB;
