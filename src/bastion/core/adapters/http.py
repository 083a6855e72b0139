"""A remote Open Inference Protocol v2 endpoint as a black-box `Model` that counts its queries.

`bastion.load_model("https://host/v2/models/NAME", api_key=...)` returns one, so
`bastion assess` can test a live gateway (or any OIP server) exactly as a client sees it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bastion.core.errors import InputError, ModelOutputError

DEFAULT_BATCH = 128


class HttpModel:
    """Probabilities from `POST {url}/infer`; metadata (shape, classes, bounds) from `GET {url}`."""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        batch_size: int = DEFAULT_BATCH,
        verify: bool | str = True,
        otp: str | None = None,
    ) -> None:
        import httpx

        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        if otp:
            headers["X-Bastion-OTP"] = otp
        self._client = httpx.Client(headers=headers, timeout=timeout, verify=verify)
        self.batch_size = batch_size
        self.queries = 0  # input rows sent
        self.requests = 0  # HTTP requests made
        meta = self._get_json(self.url)
        try:
            self.name = str(meta["name"])
            self.input_shape = tuple(int(d) for d in meta["inputs"][0]["shape"][1:])
            self.n_classes = int(meta["outputs"][0]["shape"][-1])
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise InputError(
                f"{self.url} did not return OIP model metadata", fix="check the URL"
            ) from exc
        bounds = (meta.get("parameters") or {}).get("input_bounds")
        self.input_bounds = (float(bounds[0]), float(bounds[1])) if bounds else None

    def _get_json(self, url: str) -> dict[str, Any]:
        import httpx

        try:
            response = self._client.get(url)
        except httpx.HTTPError as exc:
            raise InputError(
                f"cannot reach {url}: {exc}", fix="check the address and that the server runs"
            ) from exc
        self._raise_for(response)
        data = response.json()
        if not isinstance(data, dict):
            raise InputError(
                f"{url} returned {type(data).__name__}, not a JSON object", fix="check the URL"
            )
        return data

    @staticmethod
    def _raise_for(response: Any) -> None:
        if response.status_code < 400:
            return
        try:
            error = response.json().get("error", {})
            detail = f"{error.get('code')}: {error.get('message')}"
        except (ValueError, AttributeError):
            detail = response.text[:200]
        fix = (
            "check the API key and its role"
            if response.status_code in (401, 403)
            else "see the server's message"
        )
        raise InputError(
            f"{response.request.url} answered {response.status_code} ({detail})", fix=fix
        )

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        arr = np.asarray(x, dtype=np.float32)
        out = [
            self._infer(arr[i : i + self.batch_size]) for i in range(0, len(arr), self.batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, self.n_classes), dtype=np.float32)

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        import httpx

        body = {
            "inputs": [
                {
                    "name": "input",
                    "shape": list(batch.shape),
                    "datatype": "FP32",
                    "data": batch.ravel().tolist(),
                }
            ]
        }
        try:
            response = self._client.post(f"{self.url}/infer", json=body)
        except httpx.HTTPError as exc:
            raise InputError(
                f"cannot reach {self.url}: {exc}", fix="check that the server runs"
            ) from exc
        self.requests += 1
        self.queries += len(batch)
        self._raise_for(response)
        try:
            output = response.json()["outputs"][0]
            probs = np.asarray(output["data"], dtype=np.float32).reshape(output["shape"])
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise ModelOutputError(
                f"{self.url} returned a malformed OIP response", fix="check the server"
            ) from exc
        return probs

    def close(self) -> None:
        self._client.close()
