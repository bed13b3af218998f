// vitest config of the e2e tier (test/e2e/run.sh). Its files end in .e2e.ts, so the unit run's
// default include (*.test.ts) never picks them up.
import { defineConfig } from "vitest/config";

export default defineConfig({
    test: {
        include: ["test/e2e/**/*.e2e.ts"],
        testTimeout: 20 * 60 * 1000,
        hookTimeout: 10 * 60 * 1000,
        fileParallelism: false,
        sequence: { concurrent: false },
        pool: "forks",
        reporters: ["default"],
    },
});
