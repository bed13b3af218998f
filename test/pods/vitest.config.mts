// vitest config of the pods tier (test/pods/run.sh). Its files end in .pods.ts, so neither the unit
// run nor the e2e run picks them up.
import { defineConfig } from "vitest/config";

export default defineConfig({
    test: {
        include: ["test/pods/**/*.pods.ts"],
        testTimeout: 30 * 60 * 1000,
        hookTimeout: 10 * 60 * 1000,
        fileParallelism: false,
        sequence: { concurrent: false },
        pool: "forks",
        reporters: ["default"],
    },
});
