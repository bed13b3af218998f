// A tiny volume provisioner for the e2e cluster (kwok provisions nothing).
//
//   node sim/provisioner.mjs KUBECONFIG
//
// Once a second: for every Pending PersistentVolumeClaim without a volume whose StorageClass
// exists, create a PersistentVolume pre-bound to it (capacity = request, same access modes and
// class, reclaimPolicy Retain, a hostPath that nothing reads). The PV controller of
// kube-controller-manager then binds them. A Released PV named after the same namespace/claim is
// handed back to a new claim of that name, the way a user re-attaches a retained volume: data kept
// across `pulumi destroy` is found again by the next `pulumi up`.
//
// With COT_SIM_VOLUME_ROOT set (the pods tier's real node), each PV is a real folder under it, made
// world-writable the way local-path-provisioner makes its folders: a hostPath volume gets no fsGroup
// ownership change, and the pipeline's pods run as non-root.
import fs from "node:fs";
import path from "node:path";
import https from "node:https";

const volumeRoot = process.env.COT_SIM_VOLUME_ROOT;
const volumePath = (namespace, name) => path.join(volumeRoot ?? "/var/lib/e2e-volumes", namespace, name);
const kubeconfig = fs.readFileSync(process.argv[2], "utf8");
const field = (k) => kubeconfig.match(new RegExp(`${k}: (\\S+)`))[1];
const server = new URL(field("server"));
const agent = new https.Agent({
  ca: fs.readFileSync(field("certificate-authority")),
  cert: fs.readFileSync(field("client-certificate")),
  key: fs.readFileSync(field("client-key")),
  keepAlive: true,
});

function request(method, path, body, contentType = "application/json") {
  return new Promise((resolve, reject) => {
    const req = https.request(
      { host: server.hostname, port: server.port, path, method, agent, headers: body ? { "content-type": contentType } : {} },
      (res) => {
        let data = "";
        res.on("data", (c) => (data += c));
        res.on("end", () => {
          if (res.statusCode >= 300) reject(new Error(`${method} ${path}: ${res.statusCode} ${data}`));
          else resolve(data ? JSON.parse(data) : {});
        });
      },
    );
    req.on("error", reject);
    if (body) req.write(JSON.stringify(body));
    req.end();
  });
}

const pvName = (ns, name) => `e2e-${ns}-${name}`.toLowerCase().replace(/[^a-z0-9-.]/g, "-").slice(0, 250);
const log = (msg) => console.log(`${new Date().toISOString()} ${msg}`);

async function tick() {
  const [pvcs, pvs, classes] = await Promise.all([
    request("GET", "/api/v1/persistentvolumeclaims"),
    request("GET", "/api/v1/persistentvolumes"),
    request("GET", "/apis/storage.k8s.io/v1/storageclasses"),
  ]);
  const classNames = new Set(classes.items.map((c) => c.metadata.name));
  const byName = new Map(pvs.items.map((pv) => [pv.metadata.name, pv]));
  for (const pvc of pvcs.items) {
    if (pvc.status?.phase !== "Pending" || pvc.spec.volumeName || pvc.metadata.deletionTimestamp) continue;
    const { namespace, name, uid } = pvc.metadata;
    const cls = pvc.spec.storageClassName;
    if (!cls || !classNames.has(cls)) continue; // like a real cluster: no class, no volume
    const existing = byName.get(pvName(namespace, name));
    if (existing) {
      if (existing.status?.phase === "Released" && existing.spec.claimRef?.uid !== uid) {
        await request("PATCH", `/api/v1/persistentvolumes/${existing.metadata.name}`,
          { spec: { claimRef: { namespace, name, uid, resourceVersion: null } } }, "application/merge-patch+json");
        log(`re-bound released ${existing.metadata.name} to ${namespace}/${name}`);
      }
      continue;
    }
    const pv = {
      apiVersion: "v1",
      kind: "PersistentVolume",
      metadata: {
        name: pvName(namespace, name),
        labels: { "e2e.cot-vr.local/provisioned": "true" },
        annotations: { "pv.kubernetes.io/provisioned-by": "e2e.cot-vr.local/fake" },
      },
      spec: {
        capacity: { storage: pvc.spec.resources?.requests?.storage ?? "1Gi" },
        accessModes: pvc.spec.accessModes ?? ["ReadWriteOnce"],
        volumeMode: pvc.spec.volumeMode ?? "Filesystem",
        storageClassName: cls,
        persistentVolumeReclaimPolicy: "Retain",
        claimRef: { apiVersion: "v1", kind: "PersistentVolumeClaim", namespace, name, uid },
        hostPath: { path: volumePath(namespace, name) },
      },
    };
    if (volumeRoot) {
      fs.mkdirSync(pv.spec.hostPath.path, { recursive: true });
      fs.chmodSync(pv.spec.hostPath.path, 0o777);
    }
    await request("POST", "/api/v1/persistentvolumes", pv);
    log(`provisioned ${pv.metadata.name} (${pv.spec.capacity.storage}, ${pv.spec.accessModes}, ${cls}) for ${namespace}/${name}`);
  }
}

async function loop() {
  for (;;) {
    try {
      await tick();
    } catch (e) {
      log(`error: ${e.message}`);
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}
process.on("SIGTERM", () => process.exit(0));
loop();
