import * as path from "path";
import { describe, expect, it } from "vitest";
import { builtImageName, IMAGES_DIR } from "../../components/images";
import { container, render, settings } from "./helpers";

const build = {
    images: { build: true, registry: { server: "ghcr.io", repository: "ghcr.io/team", username: "me" } },
    registryPassword: "registry-password-secret",
};

describe("images", () => {
    it("run the configured references when not built", async () => {
        const r = await render(settings({ images: { trainer: "reg.example/t:1.2", datagen: "reg.example/d@sha256:" + "b".repeat(64) } }));
        expect(container(r.job("train", "lora-11b")).image).toBe("reg.example/t:1.2");
        expect(container(r.job("generate")).image).toBe("reg.example/d@sha256:" + "b".repeat(64));
        expect(r.reg.filter((x) => x.type.startsWith("docker:"))).toEqual([]);
    });
    it("are built from images/ with @pulumi/docker, pushed, and run by the Jobs when build is on", async () => {
        const s = settings(build);
        const r = await render(s);
        const imgs = r.reg.filter((x) => x.type === "docker:index/image:Image");
        expect(imgs.map((i) => i.inputs.imageName)).toEqual([builtImageName(s, "trainer"), builtImageName(s, "datagen")]);
        expect(imgs[0].inputs.imageName).toMatch(/^ghcr\.io\/team\/cot-vr-trainer:[0-9a-f]{12}$/);
        expect(imgs[0].inputs.build).toMatchObject({ context: IMAGES_DIR, dockerfile: path.join(IMAGES_DIR, "trainer", "Dockerfile") });
        // The docker provider keeps the whole registry block secret.
        expect(imgs[0].inputs.registry).toEqual({ server: "<redacted>", username: "<redacted>", password: "<redacted>" });
        // Under mocks there is no pushed digest; the content-hash tag stands in for it.
        expect(container(r.job("train", "lora-11b")).image).toBe(builtImageName(s, "trainer"));
        expect(container(r.job("generate")).image).toBe(builtImageName(s, "datagen"));
        // The teacher keeps the upstream vLLM image.
        expect(container(r.byKind("Deployment")[0]).image).toBe(s.images.vllm);
    });
    it("pull with a registry Secret whose password stays secret", async () => {
        const r = await render(settings(build));
        const pull = r.byKind("Secret").find((x) => x.type === "kubernetes.io/dockerconfigjson")!;
        expect(pull.stringData).toEqual({ ".dockerconfigjson": "<redacted>" });
        expect(r.job("evaluate", "base-11b").spec.template.spec.imagePullSecrets).toEqual([{ name: "blog-registry" }]);
        expect(JSON.stringify(r.reg).includes("registry-password-secret")).toBe(false);
    });
    it("re-run the stages that use an image when its sources change (the tag is a content hash)", async () => {
        const a = settings(build);
        const b = settings({ ...build, images: { ...build.images, registry: { ...build.images.registry, repository: "ghcr.io/other" } } });
        const [ra, rb] = [await render(a), await render(b)];
        expect(ra.job("train", "lora-11b").metadata.name).not.toBe(rb.job("train", "lora-11b").metadata.name);
        expect(ra.byKind("Deployment")[0].metadata.name).toBe(rb.byKind("Deployment")[0].metadata.name);
    });
});
