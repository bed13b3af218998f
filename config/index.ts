// The only reader of stack configuration, by job: schema.ts (the keys, their defaults and descriptions),
// facts.ts (what the code knows about models, data and recipe), derive.ts (validated settings: planning
// and checks across keys), configmap.ts (the flat "project:key" map decoded and parsed), stackfile.ts
// (stack files read directly) and pulumi.ts (the Pulumi runtime's config: the program imports it by
// its path, so the CLIs never load the Pulumi SDK). `import ... from "../config"` reaches the rest.
export { PROJECT, SECRET_KEYS, STAGE_NAMES } from "../contract";
export type { SecretKey, StageName } from "../contract";
export * from "./schema";
export * from "./facts";
export * from "./derive";
export * from "./configmap";
export * from "./stackfile";
export * from "./measured";
