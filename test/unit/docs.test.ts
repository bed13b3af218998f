import * as fs from "fs";
import { describe, expect, it } from "vitest";
import { configRows, JSON_SCHEMA, README, readmeWithTable, stackJsonSchema } from "../../scripts/config-docs";

describe("README config table", () => {
    it("documents every key of the schema, as generated (run `npm run docs` after changing config/schema.ts)", () => {
        const readme = fs.readFileSync(README, "utf8");
        expect(readme).toBe(readmeWithTable(readme));
    });
    it("has a meaning for every key", () => {
        expect(configRows().filter((r) => !r[3]).map((r) => r[0])).toEqual([]);
        expect(configRows().length).toBeGreaterThan(90);
    });
});

describe("config/stack.schema.json", () => {
    it("is the JSON Schema of the zod schema, as generated (run `npm run docs` after changing config/schema.ts)", () => {
        expect(fs.readFileSync(JSON_SCHEMA, "utf8")).toBe(stackJsonSchema());
    });
});
