#!/usr/bin/env bash
# OPT-IN: run the install path against a real local cluster (kind or k3d) with locally built
# images. Not part of the test suite (it needs Docker and a cluster); see e2e/README.md.
#
#   CLUSTER=kind ./e2e/real-cluster.sh     # or CLUSTER=k3d
set -euo pipefail

cluster_tool="${CLUSTER:-kind}"
name="${CLUSTER_NAME:-gamefleet}"
ns_ops=gamefleet-system
ns=games
tag=dev
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

for tool in docker kubectl helm "$cluster_tool"; do
  command -v "$tool" >/dev/null || { echo "real-cluster: $tool not found" >&2; exit 1; }
done

echo "== cluster ($cluster_tool $name)"
case "$cluster_tool" in
  kind) kind get clusters | grep -qx "$name" || kind create cluster --name "$name" --wait 120s ;;
  k3d)  k3d cluster list "$name" >/dev/null 2>&1 || k3d cluster create "$name" --wait ;;
  *) echo "CLUSTER must be kind or k3d" >&2; exit 1 ;;
esac

echo "== images"
docker build -f gameserver/Dockerfile -t "gameserver:$tag" .
docker build -f operator/Dockerfile -t "gamefleet-operator:$tag" .
for image in "gameserver:$tag" "gamefleet-operator:$tag"; do
  case "$cluster_tool" in
    kind) kind load docker-image "$image" --name "$name" ;;
    k3d)  k3d image import "$image" --cluster "$name" ;;
  esac
done

echo "== operator (chart)"
helm upgrade --install gamefleet charts/gamefleet-operator -n "$ns_ops" --create-namespace \
  --set image.repository=gamefleet-operator --set image.tag="$tag" --set image.pullPolicy=Never --wait
kubectl get crd gamefleets.gamefleet.dev

echo "== fleet"
kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f -
# Fresh secrets (gateways refuse the placeholders in examples/secrets.yaml).
kubectl -n "$ns" create secret generic dice-secrets \
  --from-literal=jwt-secret="$(openssl rand -hex 32)" \
  --from-literal=admin-token="$(openssl rand -hex 32)" \
  --from-literal=redis-url=redis://redis:6379 --dry-run=client -o yaml | kubectl apply -f -
kubectl -n "$ns" apply -f examples/redis-dev.yaml
kubectl -n "$ns" rollout status deployment/redis --timeout=120s
sed -e "s#image: ghcr.io/gamefleet/gameserver:0.1.0#image: gameserver:$tag#" \
    -e "s#imagePullPolicy: IfNotPresent#imagePullPolicy: Never#" examples/dice-fleet.yaml \
  | kubectl -n "$ns" apply -f -
kubectl -n "$ns" wait gf/dice --for=condition=Ready --timeout=300s
kubectl -n "$ns" get gf

echo "== players"
# The load generator only dials loopback, so it runs next to a socat that forwards the pod's
# loopback to the player Service.
jwt="$(kubectl -n "$ns" get secret dice-secrets -o jsonpath='{.data.jwt-secret}' | base64 -d)"
kubectl -n "$ns" delete pod players --ignore-not-found --wait
kubectl -n "$ns" apply -f - <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: players
spec:
  restartPolicy: Never
  containers:
    - name: forward
      image: alpine/socat:1.8.0.1
      args: ["TCP-LISTEN:8080,bind=127.0.0.1,fork,reuseaddr", "TCP:dice-players:80"]
    - name: bench
      image: gameserver:$tag
      imagePullPolicy: Never
      args: ["bench", "--url", "ws://127.0.0.1:8080/ws", "--connections", "300", "--rooms", "10",
             "--bet-rate", "50", "--duration", "20"]
      env:
        - name: JWT_SECRET
          value: "$jwt"
YAML
kubectl -n "$ns" wait pod/players --for=jsonpath='{.status.containerStatuses[?(@.name=="bench")].state.terminated.reason}'=Completed --timeout=180s
kubectl -n "$ns" logs players -c bench

echo "== cleanup: kubectl -n $ns delete gf dice; helm -n $ns_ops uninstall gamefleet; $cluster_tool delete cluster --name $name"
