// Coalition's GraphiQL page (api/graphiql.py): the API needs a bearer token, the page does
// not. The headers editor opens with a hint; once an Authorization header is pasted there,
// a new fetcher makes GraphiQL fetch the schema again (introspection) with that token.
(function () {
  "use strict";

  const root = document.getElementById("graphiql");
  const endpoint = new URL(root.dataset.endpoint, window.location.href).toString();

  const HEADERS_HINT = JSON.stringify(
    { Authorization: "Bearer <paste an access_token here>" },
    null,
    2,
  );

  const DEFAULT_QUERY = `# Coalition GraphQL API
#
# 1. Get a token with your API client's id and secret:
#      curl -u "$CLIENT_ID:$CLIENT_SECRET" \\
#        -d grant_type=client_credentials \\
#        ${new URL("/oauth/token", endpoint)}
# 2. Paste its access_token in Headers (below):
#      {"Authorization": "Bearer <access_token>"}
#    Docs and completion load with the token.
# 3. Run the query: Ctrl-Enter, or the play button.
#
# The schema as SDL, no token needed:
#   ${new URL("/schema.graphql", endpoint)}

{
  viewer {
    clientId
    scopes
  }
}
`;

  // The Authorization header in the headers editor's text, or null (unparsable text, none).
  function authorizationOf(text) {
    try {
      const headers = JSON.parse(text || "{}");
      for (const name of Object.keys(headers)) {
        if (name.toLowerCase() === "authorization") {
          const value = String(headers[name]);
          return value.includes("<") ? null : value; // the hint is not a token
        }
      }
    } catch (error) {
      // Half-typed JSON: keep the last fetcher.
    }
    return undefined;
  }

  function CoalitionGraphiQL() {
    const [authorization, setAuthorization] = React.useState(null);
    // A new fetcher when the token changes: GraphiQL introspects again with each new one.
    // Headers themselves come from the editor on every request.
    const fetcher = React.useMemo(
      () => GraphiQL.createFetcher({ url: endpoint }),
      [authorization],
    );
    const explorer = React.useMemo(() => GraphiQLPluginExplorer.explorerPlugin(), []);

    function onEditHeaders(text) {
      const found = authorizationOf(text);
      if (found !== undefined && found !== authorization) {
        setAuthorization(found);
      }
    }

    return React.createElement(GraphiQL, {
      fetcher: fetcher,
      plugins: [explorer],
      defaultQuery: DEFAULT_QUERY,
      defaultHeaders: HEADERS_HINT,
      defaultEditorToolsVisibility: "headers",
      isHeadersEditorEnabled: true,
      // A token kept in localStorage would outlive the tab: it is pasted again instead.
      shouldPersistHeaders: false,
      inputValueDeprecation: true,
      onEditHeaders: onEditHeaders,
    });
  }

  ReactDOM.createRoot(root).render(React.createElement(CoalitionGraphiQL));
})();
