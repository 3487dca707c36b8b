//! Cluster recipes for a sweep's workers (`shapelab sweep EXP --emit slurm|k8s`): an sbatch
//! job array, or a Kubernetes Indexed Job, whose every task runs `shapelab sweep EXP --worker`.
//!
//! Emitted rather than hand-written so that the flags a worker needs stay in step with the
//! binary. A recipe never holds the store's URL or a password: it reads `SHAPELAB_STORE` (and
//! `PGPASSWORD`) and `SHAPELAB_ARTIFACTS` when it runs, from the submitting shell (Slurm) or
//! from a Secret (Kubernetes). It must not submit anything.

use std::path::Path;

/// What a recipe is built from.
pub struct Recipe<'a> {
    /// The experiment's name (names the job).
    pub name: &'a str,
    /// The experiment file, absolute (Slurm: read where the task runs).
    pub experiment: &'a Path,
    /// Its text (Kubernetes: carried in a ConfigMap).
    pub text: &'a str,
    /// The shapelab binary, absolute (Slurm).
    pub binary: &'a Path,
    /// Tasks (workers) in all, and at once.
    pub tasks: u32,
    pub at_once: Option<u32>,
    /// Cores per worker: runs trained at once by each.
    pub cores: usize,
    /// Lease in seconds.
    pub lease: u64,
}

/// A job name both schedulers accept: lower-case letters, digits and dashes.
fn job_name(name: &str) -> String {
    let s: String = name
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let s = s.trim_matches('-');
    format!("shapelab-{}", if s.is_empty() { "sweep" } else { s })
        .chars()
        .take(52)
        .collect()
}

/// A path quoted for a POSIX shell.
fn sh_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}

/// An sbatch script: a job array of workers, requeued if a node fails.
pub fn slurm(r: &Recipe) -> String {
    let name = job_name(r.name);
    let limit = r.at_once.map_or(String::new(), |k| format!("%{k}"));
    format!(
        r#"#!/bin/bash
# shapelab sweep `{exp_name}` as a Slurm job array: each of the {tasks} tasks is a worker that
# claims runs from the store until every run is stored, exactly once. Submit it from a shell
# that has the store and a shared directory for the model directories in its environment:
#   export SHAPELAB_STORE=postgres://USER@HOST:5432/DATABASE   (the password in PGPASSWORD)
#   export SHAPELAB_ARTIFACTS=/a/directory/every/node/sees
#   sbatch this-file
# Neither value is written here; sbatch passes the submitting environment to every task.
#SBATCH --job-name={name}
#SBATCH --array=0-{last}{limit}
#SBATCH --cpus-per-task={cores}
#SBATCH --requeue
#SBATCH --export=ALL
#SBATCH --output={name}-%A_%a.out
set -euo pipefail
: "${{SHAPELAB_STORE:?set SHAPELAB_STORE to the postgres:// URL of the store before sbatch}}"
: "${{SHAPELAB_ARTIFACTS:?set SHAPELAB_ARTIFACTS to a directory every node sees before sbatch}}"
exec {binary} sweep {experiment} --worker --store "$SHAPELAB_STORE" \
  --artifacts "$SHAPELAB_ARTIFACTS" --lease {lease} --jobs "${{SLURM_CPUS_PER_TASK:-{cores}}}" --quiet
"#,
        exp_name = r.name,
        tasks = r.tasks,
        last = r.tasks.saturating_sub(1),
        cores = r.cores,
        binary = sh_quote(r.binary),
        experiment = sh_quote(r.experiment),
        lease = r.lease,
    )
}

/// `text` as the lines of a YAML literal block scalar indented by four spaces, and the
/// chomping indicator that makes the scalar read back exactly as `text`: `+` keeps every final
/// newline, `-` adds none. The indentation indicator (`|2`, two past the key's) is explicit, so
/// a first line that begins with spaces cannot change the indentation a parser detects.
fn block_scalar(text: &str) -> (String, char) {
    let body: String = text
        .split_inclusive('\n')
        .map(|l| format!("    {l}"))
        .collect();
    match text.ends_with('\n') {
        true => (body, '+'),
        false if text.is_empty() => (String::new(), '-'),
        false => (body + "\n", '-'),
    }
}

/// A ConfigMap holding the experiment and an Indexed Job of workers. The store's URL and
/// password come from the Secret `shapelab-store` (keys `url`, `password`), the artifacts
/// from the PersistentVolumeClaim `shapelab-artifacts`; the image is `image`.
pub fn k8s(r: &Recipe, image: &str) -> String {
    let name = job_name(r.name);
    let (text, chomp) = block_scalar(r.text);
    let parallelism = r.at_once.unwrap_or(r.tasks).min(r.tasks);
    format!(
        r#"# shapelab sweep `{exp_name}` as a Kubernetes Indexed Job: each of the {tasks} pods is a worker
# that claims runs from the store until every run is stored, exactly once (two pods running
# one index, which Kubernetes allows, still store each run once). Before applying it:
#   kubectl create secret generic shapelab-store --from-literal=url=postgres://USER@HOST:5432/DATABASE \
#     --from-literal=password="$PGPASSWORD"
#   and a ReadWriteMany PersistentVolumeClaim named shapelab-artifacts.
# Then: kubectl apply -f this-file
apiVersion: v1
kind: ConfigMap
metadata:
  name: {name}-experiment
data:
  experiment.toml: |2{chomp}
{text}---
apiVersion: batch/v1
kind: Job
metadata:
  name: {name}
spec:
  completionMode: Indexed
  completions: {tasks}
  parallelism: {parallelism}
  backoffLimit: {backoff}
  template:
    spec:
      restartPolicy: OnFailure
      containers:
        - name: worker
          image: {image}
          args: ["sweep", "/experiment/experiment.toml", "--worker", "--store", "$(SHAPELAB_STORE)",
                 "--artifacts", "/artifacts", "--lease", "{lease}", "--jobs", "{cores}", "--quiet"]
          env:
            - name: SHAPELAB_STORE
              valueFrom: {{secretKeyRef: {{name: shapelab-store, key: url}}}}
            - name: PGPASSWORD
              valueFrom: {{secretKeyRef: {{name: shapelab-store, key: password}}}}
          resources:
            requests: {{cpu: "{cores}"}}
          volumeMounts:
            - {{name: experiment, mountPath: /experiment, readOnly: true}}
            - {{name: artifacts, mountPath: /artifacts}}
      volumes:
        - name: experiment
          configMap: {{name: {name}-experiment}}
        - name: artifacts
          persistentVolumeClaim: {{claimName: shapelab-artifacts}}
"#,
        exp_name = r.name,
        tasks = r.tasks,
        backoff = r.tasks.saturating_mul(2),
        cores = r.cores,
        lease = r.lease,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipe<'a>(text: &'a str) -> Recipe<'a> {
        Recipe {
            name: "Quick sweep",
            experiment: Path::new("/home/ana/exp's.toml"),
            text,
            binary: Path::new("/opt/shapelab"),
            tasks: 16,
            at_once: Some(4),
            cores: 2,
            lease: 60,
        }
    }

    #[test]
    fn slurm_arrays_are_workers_and_hold_no_secret() {
        let s = slurm(&recipe("name = \"q\""));
        assert!(s.contains("#SBATCH --array=0-15%4"), "{s}");
        assert!(s.contains("#SBATCH --job-name=shapelab-quick-sweep"));
        assert!(s.contains("--worker --store \"$SHAPELAB_STORE\""));
        assert!(s.contains("'/home/ana/exp'\\''s.toml'"), "quoted: {s}");
        assert!(!s.contains("postgres://ana") && !s.contains("password="));
        // The script parses: bash reads it without running it.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sweep.sbatch");
        std::fs::write(&p, &s).unwrap();
        let check = std::process::Command::new("bash")
            .arg("-n")
            .arg(&p)
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "{}",
            String::from_utf8_lossy(&check.stderr)
        );
    }

    /// The documents of `manifest`, parsed by a YAML parser.
    fn yaml(manifest: &str) -> Vec<yaml_rust2::Yaml> {
        yaml_rust2::YamlLoader::load_from_str(manifest).expect("valid YAML")
    }

    #[test]
    fn the_config_map_reads_back_as_the_experiment_byte_for_byte() {
        let texts = [
            "name = \"q\"\nseeds = 5\n",
            "name = \"q\"\nseeds = 5",
            "  name = \"q\"  # indented first line\nseeds = 5\n\n\n",
            "# a comment: with a colon\n\n[grid]\n\tarchs = [\"2-2\"] # a tab\n---\n",
        ];
        for text in texts {
            let k = k8s(&recipe(text), "registry/shapelab:1");
            let docs = yaml(&k);
            assert_eq!(docs.len(), 2, "{k}");
            assert_eq!(docs[0]["kind"].as_str(), Some("ConfigMap"));
            assert_eq!(
                docs[0]["data"]["experiment.toml"].as_str(),
                Some(text),
                "{k}"
            );
            assert_eq!(docs[1]["kind"].as_str(), Some("Job"));
        }
    }

    #[test]
    fn k8s_jobs_are_indexed_and_carry_the_experiment() {
        let k = k8s(&recipe("name = \"q\"\nseeds = 5"), "registry/shapelab:1");
        assert!(k.contains("completionMode: Indexed") && k.contains("completions: 16"));
        assert!(k.contains("parallelism: 4") && k.contains("image: registry/shapelab:1"));
        assert!(k.contains("    name = \"q\"\n    seeds = 5\n"), "{k}");
        assert!(k.contains("secretKeyRef: {name: shapelab-store, key: url}"));
    }
}
