/// Which loader runs a servable inside a worker, from `servable.shim` (DLHub SDK names) or
/// `servable.type`.
public enum Loader: String, Sendable, Hashable, CaseIterable {
    case pythonFunction = "python.PythonStaticMethodServable"
    case pythonClassMethod = "python.PythonClassMethodServable"
    case sklearn = "sklearn.ScikitLearnServable"
    case torch = "torch.TorchServable"
    case onnx = "onnx.ONNXServable"
    case keras = "keras.KerasServable"
    case tensorflow = "tensorflow.TensorFlowServable"
    case executable = "executable"

    /// Models with a free leading dimension: the worker concatenates a batch's rows and calls
    /// the model once (see docs/worker-protocol.md).
    public var takesRowBatches: Bool {
        switch self {
        case .sklearn, .torch, .onnx, .keras, .tensorflow: return true
        case .pythonFunction, .pythonClassMethod, .executable: return false
        }
    }

    /// Short names accepted in `servable.type`, in `dlhub init --type`, and shown in tables.
    public var shortName: String {
        switch self {
        case .pythonFunction: return "python"
        case .pythonClassMethod: return "python-method"
        case .sklearn: return "sklearn"
        case .torch: return "torch"
        case .onnx: return "onnx"
        case .keras: return "keras"
        case .tensorflow: return "tensorflow"
        case .executable: return "executable"
        }
    }

    /// The `servable.type` string DLHub's SDK writes.
    public var sdkTypeName: String {
        switch self {
        case .pythonFunction: return "Python static method"
        case .pythonClassMethod: return "Python class method"
        case .sklearn: return "Scikit-learn estimator"
        case .torch: return "Torch Model"
        case .onnx: return "ONNX model"
        case .keras: return "Keras Model"
        case .tensorflow: return "TensorFlow Model"
        case .executable: return "Executable"
        }
    }

    /// Finds the loader for a shim or type string; nil when none matches.
    public init?(shimOrType text: String) {
        if let l = Loader(rawValue: text) { self = l; return }
        let lowered = text.lowercased()
        for l in Loader.allCases where l.shortName == lowered || l.sdkTypeName.lowercased() == lowered {
            self = l
            return
        }
        // Older SDK spellings.
        switch lowered {
        case "sklearn.sklearnservable", "scikit-learn": self = .sklearn
        case "pytorch", "torchscript", "pytorch.pytorchservable": self = .torch
        case "python function", "python.pythonfunction": self = .pythonFunction
        default: return nil
        }
    }

    /// Loaders that need a model file under `dlhub.files.model`.
    public var needsModelFile: Bool {
        switch self {
        case .sklearn, .torch, .onnx, .keras, .tensorflow, .pythonClassMethod: return true
        case .pythonFunction, .executable: return false
        }
    }
}
