// Drives the npm package firestore-export-import for bench/engine.py, against the Firestore emulator
// (FIRESTORE_EMULATOR_HOST must be set).
//   node fei.js export PROJECT FILE    all root collections (with subcollections) -> one JSON file
//   node fei.js import PROJECT FILE    that JSON file -> PROJECT, dates and geopoints parsed back
// Prints one JSON line: {"documents": N}.
const fs = require("fs");
const { backups, restore } = require("firestore-export-import");
const { initializeApp } = require("firebase-admin/app");
const { getFirestore } = require("firebase-admin/firestore");

function count(tree) {
  // {collection: {docId: {...fields, subCollection?: {...}}}}
  let n = 0;
  for (const docs of Object.values(tree)) {
    for (const doc of Object.values(docs)) {
      n += 1;
      if (doc && doc.subCollection) n += count(doc.subCollection);
    }
  }
  return n;
}

async function main() {
  const [op, project, file] = process.argv.slice(2);
  if (!process.env.FIRESTORE_EMULATOR_HOST) throw new Error("FIRESTORE_EMULATOR_HOST is not set");
  const app = initializeApp({ projectId: project }, `fei-${op}-${project}`);
  const db = getFirestore(app);
  if (op === "export") {
    // FEI_INCLUDE_SUBCOLLECTIONS=0 skips its one listCollections() call per document (bench data has no
    // subcollections); with it on, 20k documents already exceed the emulator's 60 s deadline.
    const includeSubcollections = process.env.FEI_INCLUDE_SUBCOLLECTIONS !== "0";
    const data = await backups(db, undefined, { includeSubcollections });
    fs.writeFileSync(file, JSON.stringify(data));
    console.log(JSON.stringify({ documents: count(data) }));
  } else if (op === "import") {
    const data = JSON.parse(fs.readFileSync(file, "utf8"));
    const res = await restore(db, data, { autoParseDates: true, autoParseGeos: true });
    if (!res.status) throw new Error(res.message);
    console.log(JSON.stringify({ documents: count(data) }));
  } else {
    throw new Error(`unknown operation ${op}`);
  }
  await db.terminate();
}

main().catch((e) => {
  console.error(`fei: ${e && e.message ? e.message : e}`);
  process.exit(1);
});
