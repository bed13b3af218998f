// A kubeconfig for the in-process fake API servers of the unit tests.

/** One context, "stub", pointing at `server` with a dummy token. */
export function stubKubeconfig(server: string): string {
    return [
        "apiVersion: v1", "kind: Config", "current-context: stub",
        // client-node allows plain HTTP only with insecure-skip-tls-verify
        `clusters: [{name: stub, cluster: {server: "${server}", insecure-skip-tls-verify: true}}]`,
        "users: [{name: stub, user: {token: t}}]",
        "contexts: [{name: stub, context: {cluster: stub, user: stub}}]",
    ].join("\n");
}
