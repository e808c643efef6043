// Checks, in the browser, the proof of an exchange in "Mes données": the entry's
// inclusion in the journal's Merkle tree (RFC 9162, SHA-256) and the Ed25519 signature
// of the checkpoint (C2SP signed note) with the journal's key — WebCrypto only, no
// library. The same bundle is checked offline by `socle journal verify --proof`.
(function () {
  "use strict";
  const enc = new TextEncoder();
  const b64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
  const concat = (...parts) => {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let i = 0;
    for (const p of parts) { out.set(p, i); i += p.length; }
    return out;
  };
  const sha256 = async (bytes) => new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  const leafHash = (leaf) => sha256(concat(new Uint8Array([0]), leaf));
  const nodeHash = (l, r) => sha256(concat(new Uint8Array([1]), l, r));
  const equal = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

  // RFC 9162 §2.1.3.2.
  async function rootFromProof(index, size, leaf, proof) {
    if (index >= size) throw new Error("index hors de l’arbre");
    let fn = BigInt(index), sn = BigInt(size) - 1n, r = leaf;
    for (const p of proof) {
      if (sn === 0n) throw new Error("preuve trop longue");
      if ((fn & 1n) === 1n || fn === sn) {
        r = await nodeHash(p, r);
        while ((fn & 1n) === 0n && fn !== 0n) { fn >>= 1n; sn >>= 1n; }
      } else {
        r = await nodeHash(r, p);
      }
      fn >>= 1n; sn >>= 1n;
    }
    if (sn !== 0n) throw new Error("preuve trop courte");
    return r;
  }

  // C2SP signed note: "text\n\n— name base64(keyhash[4] ‖ signature[64])\n".
  async function openNote(note, keyText) {
    // name+hash+base64: the base64 part may itself contain "+".
    const parts = keyText.trim().split("+");
    const [name, hash, data] = [parts[0], parts[1], parts.slice(2).join("+")];
    const raw = b64(data);
    if (raw.length !== 33 || raw[0] !== 1) throw new Error("clé du journal illisible");
    const key = await crypto.subtle.importKey("raw", raw.slice(1), { name: "Ed25519" }, false, ["verify"]);
    const split = note.lastIndexOf("\n\n");
    const text = note.slice(0, split + 1);
    for (const line of note.slice(split + 2).split("\n")) {
      const m = line.match(/^\u2014 (\S+) (\S+)$/);
      if (!m || m[1] !== name) continue;
      const sig = b64(m[2]);
      const hex = Array.from(sig.slice(0, 4), (b) => b.toString(16).padStart(2, "0")).join("");
      if (hex !== hash) continue;
      if (await crypto.subtle.verify({ name: "Ed25519" }, key, sig.slice(4), enc.encode(text))) {
        return text;
      }
    }
    throw new Error("signature du point de contrôle invalide");
  }

  async function verify(bundle) {
    const text = await openNote(bundle.checkpoint, bundle.key);
    const [origin, size, root] = text.split("\n");
    if (origin !== bundle.key.split("+")[0]) throw new Error("origine inattendue");
    const computed = await rootFromProof(bundle.index, Number(size), await leafHash(b64(bundle.leaf)),
      bundle.hashes.map(b64));
    if (!equal(computed, b64(root))) throw new Error("la preuve ne mène pas à la racine signée");
    return { size: Number(size), origin };
  }

  document.querySelectorAll("button.socle-verify").forEach((button) => {
    button.addEventListener("click", async () => {
      const out = document.getElementById(button.getAttribute("aria-describedby"));
      out.textContent = "Vérification en cours…";
      try {
        const r = await fetch(button.dataset.proof, { credentials: "same-origin" });
        if (!r.ok) throw new Error("preuve indisponible (" + r.status + ")");
        const bundle = await r.json();
        if (String(bundle.index) !== button.dataset.index) throw new Error("la preuve porte sur une autre entrée");
        const entry = JSON.parse(new TextDecoder().decode(b64(bundle.leaf)));
        if (entry.kind !== "exchange") throw new Error("l’entrée prouvée n’est pas un échange");
        const v = await verify(bundle);
        out.textContent = "Preuve vérifiée : l’échange figure dans le journal signé (" + v.origin + ", " + v.size + " entrées).";
        out.className = "fr-text--sm fr-mb-0 fr-message fr-message--valid";
      } catch (e) {
        out.textContent = "Preuve non vérifiée : " + e.message + ".";
        out.className = "fr-text--sm fr-mb-0 fr-message fr-message--error";
      }
    });
  });
})();
