// The API identity of a pod that calls the Kubernetes API (the generation scales the teacher, the
// teacher's watchdog releases it, the report reads Job times): a ServiceAccount bound to a Role of
// exactly the rules it needs. Every other pod runs without a token (podSecurity, apiAccess: false).
import * as pulumi from "@pulumi/pulumi";
import * as k8s from "@pulumi/kubernetes";
import { StageContext } from "./pod";

type PolicyRule = k8s.types.input.rbac.v1.PolicyRule;

/**
 * `<resourceName>-sa`, `-role` and `-binding` under `parent`, all named `name` in the cluster.
 * Returns the account's name for the pod spec and the binding for the pod's owner to wait for.
 */
export function apiAccount(
    parent: pulumi.Resource,
    resourceName: string,
    ctx: StageContext,
    account: { name: string; labels: Record<string, string>; rules: PolicyRule[] },
): { name: pulumi.Output<string>; binding: k8s.rbac.v1.RoleBinding } {
    const metadata = { name: account.name, namespace: ctx.namespace, labels: account.labels };
    const sa = new k8s.core.v1.ServiceAccount(`${resourceName}-sa`, { metadata }, { parent });
    const role = new k8s.rbac.v1.Role(`${resourceName}-role`, { metadata, rules: account.rules }, { parent });
    const binding = new k8s.rbac.v1.RoleBinding(`${resourceName}-binding`, {
        metadata,
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: role.metadata.name },
        subjects: [{ kind: "ServiceAccount", name: sa.metadata.name, namespace: ctx.namespace }],
    }, { parent });
    return { name: sa.metadata.name, binding };
}
