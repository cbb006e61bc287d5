#!/usr/bin/env node
// Makes (or keeps) the bus's credentials and the manifest signing key under a directory, for a deployment:
//   node scripts/bus-credentials.mjs DIR [ROLE...]
// writes DIR/credentials/<role>.nk and auth.conf (@specloop/bus writeBusCredentials) and
// DIR/keys/manifest-signing.key and .pub (writeSigningKey), all 0600 but the public key, and prints the
// kubectl commands that turn them into the Secrets deploy/base mounts. ROLEs given are rotated: a new seed,
// the previous one kept valid (<role>.nk.previous) until it is deleted and this is run again.
// Needs the build (npm run build). Keep DIR out of version control.
import { join } from "node:path";
import { BUS_ROLES, writeBusCredentials, writeSigningKey } from "../shared/bus/dist/index.js";

const [dir, ...rotate] = process.argv.slice(2);
if (dir === undefined || rotate.some((r) => !BUS_ROLES.includes(r))) {
  console.error(`usage: node scripts/bus-credentials.mjs DIR [ROLE...]   (roles: ${BUS_ROLES.join(", ")})`);
  process.exit(2);
}
const credentials = writeBusCredentials({ dir: join(dir, "credentials"), rotate });
const key = writeSigningKey(join(dir, "keys"));
const file = (role) => credentials.credentialsFile(role);
console.log(`# NATS users and permissions: ${credentials.serverConfigFile}`);
console.log(`kubectl create secret generic nats-auth --from-file=${credentials.serverConfigFile}`);
for (const role of ["node", "trainer", "verifier"]) {
  console.log(`kubectl create secret generic specloop-bus-${role} --from-file=${file(role)}`);
}
console.log(`kubectl create secret generic specloop-manifest-signing --from-file=${key.keyFile}`);
console.log(`kubectl create configmap specloop-manifest-keys --from-file=${key.publicKeyFile}`);
console.log(
  `# admin (provisioning by hand) and operator (read-only status): ${file("admin")}, ${file("operator")}`,
);
