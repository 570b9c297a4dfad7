import ArgumentParser
import DLHubCore

/// `dlhub`: publish, find and run models on the cluster's DLHub service.
@main
struct DLHubCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dlhub",
        abstract: "Publish, find and run machine-learning models (servables) on this cluster's DLHub.",
        discussion: """
            The service is found from --url, DLHUB_URL, or service.json in the registry (--registry or
            DLHUB_REGISTRY). Requests are authenticated with munge, or with a token from `dlhub login`.
            """,
        version: DLHubVersion.current,
        subcommands: [
            InitCommand.self, TestCommand.self, PublishCommand.self, ListCommand.self, SearchCommand.self, DescribeCommand.self,
            WithdrawCommand.self, CiteCommand.self, DoiCommand.self, VerifyCommand.self, RunCommand.self, StatusCommand.self,
            TasksCommand.self, CancelCommand.self, LogsCommand.self,
            PilotsCommand.self, EnvCommand.self,
            LoginCommand.self, WhoAmICommand.self, OpenCommand.self, AdminCommand.self,
        ])
}
