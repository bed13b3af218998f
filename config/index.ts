// The only reader of stack configuration, by job: schema.ts (the keys, their defaults and descriptions),
// facts.ts (what the code knows about models, data and recipe), derive.ts (validated settings: planning
// and checks across keys), pulumi.ts (the Pulumi runtime's config) and stackfile.ts (stack files read
// directly). `import ... from "../config"` reaches all of them.
export { PROJECT, SECRET_KEYS, STAGE_NAMES } from "../contract";
export type { SecretKey, StageName } from "../contract";
export * from "./schema";
export * from "./facts";
export * from "./derive";
export * from "./pulumi";
export * from "./stackfile";
