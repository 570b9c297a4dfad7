import DLHubCore
import Foundation

/// servable.json documents and upload archives for tests.
public enum ServableFixtures {
    /// Metadata in the shape DLHub's own SDK (2.x) writes for a scikit-learn model.
    public static func sklearnDocument(
        name: String = "iris", title: String = "Iris classifier", visibleTo: [String] = ["public"],
        domains: [String] = ["biology"], description: String = "Predicts iris species"
    ) -> JSONValue {
        [
            "datacite": [
                "creators": [["givenName": "Ronald", "familyName": "Fisher", "affiliations": ["Rothamsted"]]],
                "publisher": "DLHub", "titles": [["title": .string(title)]],
                "resourceType": ["resourceTypeGeneral": "InteractiveResource"],
                "identifier": ["identifier": "10.YET/UNASSIGNED", "identifierType": "DOI"],
                "publicationYear": "2026", "descriptions": [["description": .string(description), "descriptionType": "Abstract"]],
                "fundingReferences": [], "relatedIdentifiers": [], "alternateIdentifiers": [], "rightsList": [],
            ],
            "dlhub": [
                "version": "0.10.0", "visible_to": .array(visibleTo.map { .string($0) }), "name": .string(name),
                "domains": .array(domains.map { .string($0) }), "type": "servable",
                "files": ["model": "/home/author/work/model.joblib"],
            ],
            "servable": [
                "language": "python", "type": "Scikit-learn estimator",
                "dependencies": ["python": ["scikit-learn": "1.5.0"]], "model_type": "LogisticRegression",
                "shim": "sklearn.ScikitLearnServable",
                "methods": [
                    "run": [
                        "input": [
                            "type": "ndarray", "shape": [nil, 4], "description": "records of 4 measurements",
                            "item_type": ["type": "float"],
                        ],
                        "output": ["type": "ndarray", "shape": [nil], "description": "species index"],
                        "parameters": [:], "method_details": ["method_name": "predict"],
                    ]
                ],
                "options": ["serialization_method": "joblib", "is_classifier": true],
            ],
        ]
    }

    /// A tar archive of servable.json plus the given files.
    public static func archive(_ doc: JSONValue, files: [String: [UInt8]] = ["model.joblib": Array("not really a model".utf8)]) -> [UInt8] {
        var entries = [TarEntry(path: "servable.json", kind: .file, contents: doc.encoded(pretty: true))]
        for (path, contents) in files.sorted(by: { $0.key < $1.key }) {
            entries.append(TarEntry(path: path, kind: .file, contents: contents))
        }
        return TarWriter.write(entries)
    }
}
